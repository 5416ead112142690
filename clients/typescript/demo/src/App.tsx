// The orders app: a token picker (or a pasted token), and the menu and buttons rendered
// from MENU / ACTIONS by what authz says this token may see.

import { useCallback, useState } from "react";
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
        <OrdersApp />
      </AuthzProvider>
    </div>
  );
}

function OrdersApp() {
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
      <footer>
        {status === "loading"
          ? "asking authz ..."
          : `${visibility.subject}: ${visibility.visible.length} of the app's elements visible, ` +
            `policy ${visibility.policyVersion}, valid until ${visibility.validUntil?.toLocaleTimeString() ?? "-"}`}
      </footer>
    </main>
  );
}
