/**
 * Which UI elements the signed-in user may see: one `GetVisibility` call for every
 * element under a prefix (`ui:`), cached until the token's expiry (`valid_until`) passes
 * or the token changes. Framework-free; the React bindings subscribe to it.
 *
 * Fail closed: an element the answer does not list, a deny, a missing field, a rejected
 * token or a failed call all mean "not visible".
 */

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { bearer, type AuthzClient, type TokenGetter } from "./client.js";
import type { ElementId } from "./elements.js";
import { Reason, type GetVisibilityResponse } from "./gen/authz/api/v1/authz_pb.js";

/**
 * - `loading`: no answer yet for the current token.
 * - `ready`: the token verified; `isVisible` answers from the policy.
 * - `signed-out`: no token, or authz rejected it (expired, wrong audience ...): ask the
 *   user to sign in again; `reason` and `message` say why.
 * - `error`: the call failed (network, server down); nothing is visible.
 */
export type VisibilityStatus = "loading" | "ready" | "signed-out" | "error";

/** An immutable view of the current answer. */
export interface Visibility {
  readonly status: VisibilityStatus;
  /** Sorted ids of the visible elements. */
  readonly visible: readonly string[];
  /** The token's subject (empty unless `ready`). */
  readonly subject: string;
  /** The token reason when `signed-out`, else `Reason.UNSPECIFIED`. */
  readonly reason: Reason;
  readonly message: string;
  readonly policyVersion: string;
  /** When the answer stops being valid (the token's `exp`); undefined when unknown. */
  readonly validUntil: Date | undefined;
  /** The failure when `status` is `error`. */
  readonly error: unknown;
  /** True only when the policy allowed `element` for the current token. */
  isVisible(element: ElementId): boolean;
}

export interface VisibilityOptions {
  /** Elements to ask about (default `ui:`). */
  prefix?: string;
  /** Action asked for (default: the server's, `view`). */
  action?: string;
  /** Casbin's enforce context: `"2"` decides with the model's r2, p2, e2, m2 (default: r, p, e, m). */
  enforceContext?: string;
  /** Retry delay after a failed call while someone is subscribed (default 10 s). */
  retryMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/**
 * True for the reasons that mean "this token was not accepted" (HTTP 401, sign in again).
 * By name, as the Python and PHP clients test it, so a token reason added to the proto is
 * one as soon as the code is regenerated.
 */
export function isTokenReason(reason: Reason): boolean {
  return Reason[reason]?.startsWith("TOKEN_") ?? false;
}

/** The proto name of a reason (`REASON_TOKEN_EXPIRED`); `REASON_UNKNOWN_<n>` for one this build lacks. */
export function reasonName(reason: Reason): string {
  const name = Reason[reason] as string | undefined;
  return name === undefined ? `REASON_UNKNOWN_${reason}` : `REASON_${name}`;
}

// setTimeout's delay is a signed 32-bit number of milliseconds.
const MAX_TIMER_MS = 2 ** 31 - 1;

function view(fields: Partial<Omit<Visibility, "isVisible">> & { status: VisibilityStatus }): Visibility {
  const visible = fields.visible ?? [];
  const allowed = new Set(visible);
  return {
    visible,
    subject: "",
    reason: Reason.UNSPECIFIED,
    message: "",
    policyVersion: "",
    validUntil: undefined,
    error: undefined,
    ...fields,
    isVisible: (element: ElementId) => allowed.has(element),
  };
}

function fromResponse(response: GetVisibilityResponse): Visibility {
  const validUntil = response.validUntil ? timestampDate(response.validUntil) : undefined;
  if (response.reason !== Reason.UNSPECIFIED) {
    return view({ status: "signed-out", reason: response.reason, message: response.message, validUntil });
  }
  // `visible` is authoritative, but an element is shown only when its decision (if sent) agrees.
  const visible = response.visible.filter((element) => response.decisions[element] ?? true).sort();
  return view({
    status: "ready",
    visible,
    subject: response.subject,
    message: response.message,
    policyVersion: response.policyVersion,
    validUntil,
  });
}

/** The cached visibility of one user's UI elements, refreshed on demand and on expiry. */
export class VisibilityStore {
  private state: Visibility = view({ status: "loading" });
  private token: string | undefined;
  private inflight: { token: string | undefined; promise: Promise<Visibility> } | undefined;
  private generation = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly prefix: string;
  private readonly action: string;
  private readonly enforceContext: string;
  private readonly retryMs: number;
  private readonly now: () => number;

  constructor(
    private readonly client: AuthzClient,
    private readonly getToken: TokenGetter,
    options: VisibilityOptions = {},
  ) {
    this.prefix = options.prefix ?? "ui:";
    this.action = options.action ?? "";
    this.enforceContext = options.enforceContext ?? "";
    this.retryMs = options.retryMs ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** The current answer (stable between changes, as `useSyncExternalStore` needs). */
  get = (): Visibility => this.state;

  /** Call `listener` after every change; returns the unsubscribe function. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.schedule(this.state, false);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.clearTimer();
    };
  };

  /**
   * Make the answer current: reads the token and asks authz again only when the token
   * changed, the cached answer's `valid_until` has passed, or the last call failed.
   */
  async refresh(): Promise<Visibility> {
    let token: string | undefined;
    try {
      token = (await this.getToken()) || undefined;
    } catch (error) {
      // A token getter that throws (auth0-react's `login_required`) means nobody is signed in.
      const signedOut = view({ status: "signed-out", reason: Reason.TOKEN_MISSING, error });
      return this.settle(++this.generation, undefined, signedOut);
    }
    if (this.isFresh(token)) {
      // A timer may fire a moment before valid_until: keep one pending.
      if (this.timer === undefined) this.schedule(this.state, false);
      return this.state;
    }
    if (this.inflight && this.inflight.token === token) return this.inflight.promise;
    if (token !== this.token) this.publish(view({ status: "loading" }));
    const generation = ++this.generation;
    const promise = this.fetch(token).then((next) => this.settle(generation, token, next));
    this.inflight = { token, promise };
    return promise;
  }

  private isFresh(token: string | undefined): boolean {
    const { status, validUntil } = this.state;
    if (token !== this.token || status === "loading" || status === "error") return false;
    return validUntil === undefined || validUntil.getTime() > this.now();
  }

  private async fetch(token: string | undefined): Promise<Visibility> {
    if (token === undefined) {
      return view({ status: "signed-out", reason: Reason.TOKEN_MISSING, message: "no access token" });
    }
    try {
      const response = await this.client.getVisibility(
        { prefix: this.prefix, action: this.action, enforceContext: this.enforceContext },
        { headers: { authorization: bearer(token) } },
      );
      return fromResponse(response);
    } catch (error) {
      return view({ status: "error", message: error instanceof Error ? error.message : String(error), error });
    }
  }

  private settle(generation: number, token: string | undefined, next: Visibility): Visibility {
    // A slower answer for a token that has since been replaced must not win.
    if (generation !== this.generation) return this.state;
    this.inflight = undefined;
    this.token = token;
    this.publish(next);
    this.schedule(next, true);
    return next;
  }

  /** Refresh when `state` runs out; `justFetched` when authz gave it a moment ago. */
  private schedule(state: Visibility, justFetched: boolean): void {
    this.clearTimer();
    let delay: number | undefined;
    if (state.status === "error") delay = this.retryMs;
    else if (state.status === "ready" && state.validUntil) {
      delay = Math.max(state.validUntil.getTime() - this.now(), 0);
      // A fresh answer already past `valid_until` (clock leeway): ask again later, not in a
      // loop. An older answer that ran out while nobody listened is refreshed at once.
      if (delay === 0 && justFetched) delay = this.retryMs;
    }
    if (delay === undefined || this.listeners.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh();
    }, Math.min(delay, MAX_TIMER_MS));
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private publish(next: Visibility): void {
    this.state = next;
    for (const listener of [...this.listeners]) listener();
  }
}
