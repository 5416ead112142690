// Test helpers: a VisibilityStore whose transport records each request it sends.

import { createAuthzClient, VisibilityStore, type TokenGetter, type VisibilityOptions } from "../src/index.js";

export { createAuthzClient };

export interface RecordedCall {
  url: string;
  authorization: string | null;
  body: unknown;
}

/** A store on a fresh client whose fetch records every call before sending it for real. */
export function freshStore(baseUrl: string, getToken: TokenGetter, options: VisibilityOptions = {}) {
  const calls: RecordedCall[] = [];
  const recording: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers);
    calls.push({
      url: String(input),
      authorization: headers.get("authorization"),
      body: JSON.parse(typeof init?.body === "string" ? init.body : new TextDecoder().decode(init?.body as Uint8Array)),
    });
    return fetch(input, init);
  };
  const client = createAuthzClient({ baseUrl, fetch: recording });
  return { store: new VisibilityStore(client, getToken, options), calls };
}
