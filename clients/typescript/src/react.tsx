/**
 * React bindings: `<AuthzProvider>` asks authz once for every visible `ui:` element,
 * `useVisibility()` reads the cached answer, `<Can element="ui:menu.orders">` renders its
 * children only when that element is visible.
 *
 * ```tsx
 * const { getAccessTokenSilently } = useAuth0();
 * <AuthzProvider baseUrl="https://authz.example.com" getToken={getAccessTokenSilently}>
 *   <Can element="ui:menu.orders"><a href="/orders">Orders</a></Can>
 * </AuthzProvider>
 * ```
 */

import {
  createContext,
  useContext,
  useEffect,
  useInsertionEffect,
  useMemo,
  useRef,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import { createAuthzClient, type AuthzClient, type TokenGetter } from "./client.js";
import type { ElementId } from "./elements.js";
import { VisibilityStore, type Visibility } from "./visibility.js";

interface AuthzContextValue {
  client: AuthzClient;
  store: VisibilityStore;
}

const AuthzContext = createContext<AuthzContextValue | null>(null);

export interface AuthzProviderProps {
  /** The authz HTTP listener (ignored when `client` is given). */
  baseUrl?: string;
  /** A client built with `createAuthzClient` (e.g. for gRPC-Web or binary). */
  client?: AuthzClient;
  /**
   * The current access token (auth0-react's `getAccessTokenSilently`). A new function
   * identity, a window focus and the answer's expiry make the provider read it again;
   * a changed token is asked about afresh.
   */
  getToken: TokenGetter;
  /** Element prefix asked for (default `ui:`). */
  prefix?: string;
  /** Action asked for (default `view`). */
  action?: string;
  children?: ReactNode;
}

/** Provides the authz client and the cached visibility of the user's UI elements. */
export function AuthzProvider({ baseUrl, client, getToken, prefix, action, children }: AuthzProviderProps) {
  // The latest token getter, so a new one needs no new client and keeps the cache. Set in
  // an insertion effect: it runs before every other effect, children's included, so a
  // child's effect calling the client already sends the new token.
  const latestGetToken = useRef(getToken);
  useInsertionEffect(() => {
    latestGetToken.current = getToken;
  }, [getToken]);
  const value = useMemo<AuthzContextValue>(() => {
    const current: TokenGetter = () => latestGetToken.current();
    const resolved = client ?? createAuthzClient({ baseUrl: requireBaseUrl(baseUrl), getToken: current });
    return { client: resolved, store: new VisibilityStore(resolved, current, { prefix, action }) };
  }, [baseUrl, client, prefix, action]);

  // Cheap when nothing changed: the store asks authz only for a new token or an expired answer.
  useEffect(() => {
    void value.store.refresh();
  }, [value, getToken]);

  useEffect(() => {
    // After a sign-in in another tab the token getter returns a different token.
    const refresh = () => void value.store.refresh();
    const onVisible = () => document.visibilityState === "visible" && refresh();
    window.addEventListener("focus", refresh);
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      window.removeEventListener("focus", refresh);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [value]);

  return <AuthzContext.Provider value={value}>{children}</AuthzContext.Provider>;
}

function requireBaseUrl(baseUrl: string | undefined): string {
  if (!baseUrl) throw new Error("AuthzProvider needs `baseUrl` or `client`");
  return baseUrl;
}

function useAuthzContext(): AuthzContextValue {
  const value = useContext(AuthzContext);
  if (!value) throw new Error("authz hooks must be used inside <AuthzProvider>");
  return value;
}

/** The typed client of the surrounding provider, for `check` / `batchCheck` calls. */
export function useAuthzClient(): AuthzClient {
  return useAuthzContext().client;
}

/** The current visibility answer; re-renders when it changes. */
export function useVisibility(): Visibility {
  const { store } = useAuthzContext();
  return useSyncExternalStore(store.subscribe, store.get, store.get);
}

export interface CanProps {
  /** A UI element id, e.g. `ui:menu.orders` (typed once the app registers its ids). */
  element: ElementId;
  children?: ReactNode;
  /** Rendered instead when the element is not visible (default: nothing). */
  fallback?: ReactNode;
}

/** Renders `children` only when the policy lets the current user see `element`. */
export function Can({ element, children, fallback = null }: CanProps) {
  return <>{useVisibility().isVisible(element) ? children : fallback}</>;
}

export type { Visibility, VisibilityStatus } from "./visibility.js";
