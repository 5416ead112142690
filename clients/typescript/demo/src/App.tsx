// The orders app: a token picker (or a pasted token), and the menu and buttons rendered
// from MENU / ACTIONS by what authz says this token may see.

import { useCallback, useEffect, useState } from "react";
import { AuthzProvider, Can, useVisibility } from "@authz/client/react";
import { ACTIONS, MENU } from "./menu";
import type { DemoConfig } from "./config";

export function App({ config }: { config: DemoConfig }) {
  const [userId, setUserId] = useState(config.users[0]?.id ?? "");
  const [pasted, setPasted] = useState("");
  const token = pasted.trim() || config.users.find((u) => u.id === userId)?.token || "";
  // A new getter per token: the provider reads it again and asks authz afresh.
  const getToken = useCallback(() => token, [token]);

  return (
    <div className="page">
      <header>
        <h1>Orders</h1>
        <fieldset className="picker">
          <legend>Signed in as</legend>
          {config.users.map((user) => (
            <button
              key={user.id}
              type="button"
              data-user={user.id}
              aria-pressed={!pasted && user.id === userId}
              onClick={() => {
                setPasted("");
                setUserId(user.id);
              }}
            >
              {user.label}
            </button>
          ))}
          <input
            aria-label="or paste an access token"
            placeholder="or paste an access token"
            value={pasted}
            onChange={(event) => setPasted(event.target.value)}
          />
        </fieldset>
      </header>
      <AuthzProvider baseUrl={config.authzUrl} getToken={getToken}>
        <OrdersApp ordersUrl={config.ordersUrl} token={token} />
      </AuthzProvider>
    </div>
  );
}

function OrdersApp({ ordersUrl, token }: { ordersUrl?: string; token: string }) {
  const visibility = useVisibility();
  const { status } = visibility;
  if (status === "signed-out") {
    return (
      <main data-status={status}>
        <p role="alert" className="signin">
          Please sign in again
        </p>
        <p className="why">{visibility.message}</p>
      </main>
    );
  }
  if (status === "error") {
    return (
      <main data-status={status}>
        <p role="alert">authz cannot be reached: {visibility.message}</p>
      </main>
    );
  }
  return (
    <main data-status={status} data-subject={visibility.subject}>
      <nav aria-label="Main">
        {MENU.map((item) => (
          <Can key={item.element} element={item.element}>
            <a href={item.href}>{item.label}</a>
          </Can>
        ))}
      </nav>
      <section className="toolbar" aria-label="Actions">
        {ACTIONS.map((action) => (
          <Can key={action.element} element={action.element}>
            <button type="button">{action.label}</button>
          </Can>
        ))}
      </section>
      {/* Once authz has accepted this token: a refused one is asked to sign in above. */}
      {ordersUrl && status === "ready" ? <OrdersList ordersUrl={ordersUrl} token={token} /> : null}
      <footer>
        {status === "loading"
          ? "asking authz ..."
          : `${visibility.subject}: ${visibility.visible.length} of the app's elements visible, ` +
            `policy ${visibility.policyVersion}, valid until ${visibility.validUntil?.toLocaleTimeString() ?? "-"}`}
      </footer>
    </main>
  );
}

interface Order {
  id: string;
  owner: string | null;
  org_id: string | null;
  status: string | null;
  amount: number | null;
}

// `token`: whose rows these are, so a token switch never shows the previous token's rows as ready.
type OrdersState = { token: string } & (
  | { status: "loading" }
  | { status: "ready"; orders: Order[] }
  | { status: "error"; message: string }
);

/** The orders this token may list: the demo's orders API filters them by a PlanResources plan. */
function OrdersList({ ordersUrl, token }: { ordersUrl: string; token: string }) {
  const [fetched, setState] = useState<OrdersState>({ token, status: "loading" });
  const state: OrdersState = fetched.token === token ? fetched : { token, status: "loading" };
  useEffect(() => {
    const abort = new AbortController();
    fetch(`${ordersUrl}/api/orders`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: abort.signal,
    })
      .then(async (response) => {
        const body = (await response.json()) as { orders?: Order[]; reason?: string; error?: string };
        if (!response.ok) throw new Error(body.reason ?? body.error ?? `HTTP ${response.status}`);
        setState({ token, status: "ready", orders: body.orders ?? [] });
      })
      .catch((error: unknown) => {
        if (!abort.signal.aborted) setState({ token, status: "error", message: String(error) });
      });
    return () => abort.abort();
  }, [ordersUrl, token]);

  return (
    <section className="orders" aria-label="Orders list" data-status={state.status}>
      <h2>Orders</h2>
      {state.status === "error" ? <p role="alert">orders: {state.message}</p> : null}
      {state.status === "ready" ? (
        <table>
          <thead>
            <tr>
              <th>Order</th>
              <th>Owner</th>
              <th>Organisation</th>
              <th>Status</th>
              <th>Amount</th>
            </tr>
          </thead>
          <tbody>
            {state.orders.map((order) => (
              <tr key={order.id} data-order={order.id}>
                <td>{order.id}</td>
                <td>{order.owner}</td>
                <td>{order.org_id}</td>
                <td>{order.status}</td>
                <td>{order.amount}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {state.status === "ready" && state.orders.length === 0 ? <p>No orders you may see.</p> : null}
    </section>
  );
}
