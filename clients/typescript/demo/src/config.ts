// config.json is written next to index.html when the demo starts (scripts/serve-demo.mjs):
// where authz listens and a freshly minted dev token per demo user.

export interface DemoUser {
  id: string;
  label: string;
  token: string;
}

export interface DemoConfig {
  authzUrl: string;
  /** The orders API (serve-demo.mjs); absent under `npm run demo:dev`. */
  ordersUrl?: string;
  users: DemoUser[];
}

export async function loadConfig(): Promise<DemoConfig> {
  const response = await fetch("./config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status} (start the demo with \`make demo\`)`);
  return (await response.json()) as DemoConfig;
}
