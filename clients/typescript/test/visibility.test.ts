// VisibilityStore against the real server: one GetVisibility call per token, cached until
// valid_until passes or the token changes; rejected tokens and failures show nothing.

import { describe, expect, inject, it, vi } from "vitest";
import { createAuthzClient, freshStore } from "./helpers.js";
import { Reason, VisibilityStore, isTokenReason } from "../src/index.js";
import { freePort } from "../scripts/authz-dev.mjs";

const { baseUrl, tokens } = inject("authz");

describe("VisibilityStore", () => {
  it("starts loading with nothing visible", () => {
    const { store } = freshStore(baseUrl, () => tokens.alice);
    expect(store.get().status).toBe("loading");
    expect(store.get().isVisible("ui:menu.orders")).toBe(false);
  });

  it("asks once with the ui: prefix and answers from the policy", async () => {
    const { store, calls } = freshStore(baseUrl, () => tokens.alice);
    const view = await store.refresh();
    expect(view.status).toBe("ready");
    expect(view.visible).toEqual(["ui:menu.orders", "ui:menu.reports"]);
    expect(view.isVisible("ui:menu.orders")).toBe(true);
    expect(view.isVisible("ui:menu.admin")).toBe(false);
    expect(view.isVisible("ui:never.named")).toBe(false);
    expect(view.subject).toBe("alice");
    expect(view.validUntil!.getTime()).toBeGreaterThan(Date.now());
    expect(calls.map((c) => c.body)).toEqual([{ prefix: "ui:" }]);
    expect(calls[0]!.authorization).toBe(`Bearer ${tokens.alice}`);
  });

  it("serves the cache while the token is unchanged and valid", async () => {
    const { store, calls } = freshStore(baseUrl, () => tokens.alice);
    const first = await store.refresh();
    const second = await store.refresh();
    expect(second).toBe(first);
    expect(calls).toHaveLength(1);
  });

  it("asks again when the token changes", async () => {
    let token = tokens.alice;
    const { store, calls } = freshStore(baseUrl, () => token);
    await store.refresh();
    token = tokens.admin;
    const view = await store.refresh();
    expect(view.visible).toEqual([
      "ui:button.create-order",
      "ui:button.delete-order",
      "ui:menu.admin",
      "ui:menu.orders",
      "ui:menu.reports",
    ]);
    expect(calls).toHaveLength(2);
  });

  it("asks again once valid_until has passed", async () => {
    let clock = Date.now();
    const { store, calls } = freshStore(baseUrl, () => tokens.alice, { now: () => clock });
    const first = await store.refresh();
    clock = first.validUntil!.getTime() - 1;
    await store.refresh();
    expect(calls).toHaveLength(1);
    clock = first.validUntil!.getTime() + 1;
    await store.refresh();
    expect(calls).toHaveLength(2);
  });

  it("refreshes by itself at valid_until while someone is subscribed", async () => {
    // A clock shifted so that the token's exp is 100 ms away.
    let offset = 0;
    const { store, calls } = freshStore(baseUrl, () => tokens.alice, { now: () => Date.now() + offset });
    const first = await store.refresh();
    offset = first.validUntil!.getTime() - Date.now() - 100;
    const unsubscribe = store.subscribe(() => {});
    try {
      await vi.waitFor(() => expect(calls).toHaveLength(2), { timeout: 5_000 });
    } finally {
      unsubscribe();
    }
  });

  it("refreshes at once when someone subscribes after valid_until has passed", async () => {
    let offset = 0;
    const now = () => Date.now() + offset;
    const { store, calls } = freshStore(baseUrl, () => tokens.alice, { now, retryMs: 60_000 });
    const first = await store.refresh();
    offset = first.validUntil!.getTime() - Date.now() + 1_000; // ran out while nobody listened
    const unsubscribe = store.subscribe(() => {});
    try {
      await vi.waitFor(() => expect(calls).toHaveLength(2), { timeout: 5_000 });
    } finally {
      unsubscribe();
    }
  });

  it("waits retryMs, not a loop, when a fresh answer is already past valid_until", async () => {
    // A clock far ahead: every answer is past its valid_until the moment it arrives.
    const now = () => Date.now() + 30 * 24 * 3600 * 1000;
    const { store, calls } = freshStore(baseUrl, () => tokens.alice, { now, retryMs: 1_000 });
    const unsubscribe = store.subscribe(() => {});
    try {
      await store.refresh();
      await vi.waitFor(() => expect(calls).toHaveLength(2), { timeout: 5_000 });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(calls.length).toBeLessThanOrEqual(3);
    } finally {
      unsubscribe();
    }
  });

  it("shares one call between concurrent refreshes", async () => {
    const { store, calls } = freshStore(baseUrl, () => tokens.alice);
    const [a, b] = await Promise.all([store.refresh(), store.refresh()]);
    expect(a).toBe(b);
    expect(calls).toHaveLength(1);
  });

  it("lets the newest token win over a slower answer for the previous one", async () => {
    // The answer for the first token is held back until the second token's answer is in.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const slowForAdmin: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (new Headers(init?.headers).get("authorization") === `Bearer ${tokens.admin}`) await held;
      return response;
    };
    let token = tokens.admin;
    const store = new VisibilityStore(createAuthzClient({ baseUrl, fetch: slowForAdmin }), () => token);
    const stale = store.refresh();
    token = tokens.alice;
    await store.refresh();
    release();
    await stale;
    expect(store.get().subject).toBe("alice");
    expect(store.get().isVisible("ui:menu.admin")).toBe(false);
  });

  it("reports an expired token as signed out, showing nothing", async () => {
    const { store } = freshStore(baseUrl, () => tokens.expired);
    const view = await store.refresh();
    expect(view.status).toBe("signed-out");
    expect(view.reason).toBe(Reason.TOKEN_EXPIRED);
    expect(isTokenReason(view.reason)).toBe(true);
    expect(view.visible).toEqual([]);
    expect(view.isVisible("ui:menu.orders")).toBe(false);
  });

  it("is signed out without calling when there is no token", async () => {
    const { store, calls } = freshStore(baseUrl, () => undefined);
    const view = await store.refresh();
    expect(view.status).toBe("signed-out");
    expect(view.reason).toBe(Reason.TOKEN_MISSING);
    expect(calls).toHaveLength(0);
  });

  it("is signed out when the token getter throws (auth0's login_required)", async () => {
    const failure = new Error("login_required");
    const { store } = freshStore(baseUrl, () => {
      throw failure;
    });
    const view = await store.refresh();
    expect(view.status).toBe("signed-out");
    expect(view.error).toBe(failure);
  });

  it("fails closed when authz cannot be reached", async () => {
    const down = `http://127.0.0.1:${await freePort()}`;
    const store = new VisibilityStore(createAuthzClient({ baseUrl: down }), () => tokens.admin);
    const view = await store.refresh();
    expect(view.status).toBe("error");
    expect(view.visible).toEqual([]);
    expect(view.isVisible("ui:menu.admin")).toBe(false);
  });

  it("notifies subscribers of each change", async () => {
    const { store } = freshStore(baseUrl, () => tokens.alice);
    const seen: string[] = [];
    const unsubscribe = store.subscribe(() => seen.push(store.get().status));
    await store.refresh();
    unsubscribe();
    expect(seen).toEqual(["loading", "ready"]);
  });

  it("asks about a custom prefix", async () => {
    const { store, calls } = freshStore(baseUrl, () => tokens.admin, { prefix: "ui:button." });
    const view = await store.refresh();
    expect(view.visible).toEqual(["ui:button.create-order", "ui:button.delete-order"]);
    expect(calls[0]!.body).toEqual({ prefix: "ui:button." });
  });
});
