// @vitest-environment jsdom
// AuthzProvider, useVisibility and <Can> rendering against the real server.

import { act, useEffect, useState } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, beforeEach, describe, expect, inject, it, vi } from "vitest";
import { AuthzProvider, Can, useAuthzClient, useVisibility } from "../src/react.js";

const { baseUrl, tokens } = inject("authz");
// Renders and answers arriving from the server are flushed inside act().
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

function Menu() {
  const { status } = useVisibility();
  if (status === "signed-out") return <p>Please sign in again</p>;
  return (
    <nav data-status={status}>
      <Can element="ui:menu.orders">
        <a>Orders</a>
      </Can>
      <Can element="ui:menu.reports">
        <a>Reports</a>
      </Can>
      <Can element="ui:menu.admin" fallback={<span>no admin</span>}>
        <a>Admin</a>
      </Can>
    </nav>
  );
}

let container: HTMLDivElement;
let root: Root;

beforeEach(() => {
  container = document.createElement("div");
  document.body.append(container);
  root = createRoot(container);
});

afterEach(() => {
  act(() => root.unmount());
  container.remove();
});

const text = () => container.textContent ?? "";
// Each wait covers a real call to authz: vi.waitFor's 1 s default is short on a busy machine.
const until = (assertion: () => void) => act(() => vi.waitFor(assertion, { timeout: 5_000 }));
const ready = () => until(() => expect(container.querySelector("nav")?.dataset.status).toBe("ready"));

describe("React bindings", () => {
  it("renders only the elements the token may see", async () => {
    act(() => root.render(<AuthzProvider baseUrl={baseUrl} getToken={() => tokens.alice}><Menu /></AuthzProvider>));
    expect(text()).not.toContain("Orders"); // nothing before the answer
    await ready();
    expect(text()).toBe("OrdersReportsno admin");
  });

  it("asks again when the token getter changes", async () => {
    let switchUser!: (token: string) => void;
    function App() {
      const [token, setToken] = useState(tokens.alice);
      switchUser = setToken;
      return (
        <AuthzProvider baseUrl={baseUrl} getToken={() => token}>
          <Menu />
        </AuthzProvider>
      );
    }
    act(() => root.render(<App />));
    await ready();
    expect(text()).not.toContain("Admin");
    act(() => switchUser(tokens.admin));
    await until(() => expect(text()).toBe("OrdersReportsAdmin"));
  });

  it("gives a client that sends the current token, from the first effect on", async () => {
    const seen: string[] = [];
    let switchUser!: (token: string) => void;
    let client!: ReturnType<typeof useAuthzClient>;
    function Who({ user }: { user: string }) {
      client = useAuthzClient();
      // A child's effect runs before its provider's: it must already see the new token.
      useEffect(() => {
        void client.getPrincipal({}).then((p) => seen.push(`${user}:${p.subject}`));
      }, [user]);
      return null;
    }
    function App() {
      const [token, setToken] = useState(tokens.alice);
      switchUser = setToken;
      return (
        <AuthzProvider baseUrl={baseUrl} getToken={() => token}>
          <Who user={token === tokens.alice ? "alice" : "admin"} />
        </AuthzProvider>
      );
    }
    act(() => root.render(<App />));
    await until(() => expect(seen).toEqual(["alice:alice"]));
    const before = client;
    act(() => switchUser(tokens.admin));
    await until(() => expect(seen).toEqual(["alice:alice", "admin:root"]));
    expect(client).toBe(before); // the same client and cache, with the new token
  });

  it("shows the sign-in prompt for an expired token", async () => {
    act(() => root.render(<AuthzProvider baseUrl={baseUrl} getToken={() => tokens.expired}><Menu /></AuthzProvider>));
    await until(() => expect(text()).toBe("Please sign in again"));
  });

  it("refuses hooks outside a provider", () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect(() => act(() => root.render(<Menu />))).toThrow(/inside <AuthzProvider>/);
  });
});
