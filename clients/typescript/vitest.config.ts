import { defineConfig } from "vitest/config";

// The tests talk to a real `authz serve --dev` that test/global-setup.ts starts once.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "test/**/*.test.tsx"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
