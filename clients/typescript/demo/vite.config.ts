// `npm run demo:build`: the demo imports @authz/client from this package's own source.

import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const source = (file: string) => fileURLToPath(new URL(`../src/${file}`, import.meta.url));

export default defineConfig({
  base: "./",
  // JSX is compiled by Vite's own esbuild (tsconfig "jsx": "react-jsx"); no React plugin is
  // needed for a build, and one fewer package keeps the install lean.
  esbuild: { jsx: "automatic" },
  resolve: {
    alias: [
      { find: /^@authz\/client\/react$/, replacement: source("react.tsx") },
      { find: /^@authz\/client$/, replacement: source("index.ts") },
    ],
  },
  build: { outDir: "dist", emptyOutDir: true },
  server: { host: "127.0.0.1", port: 5173, strictPort: true },
  preview: { host: "127.0.0.1", port: 5173, strictPort: true },
});
