/** Builds the console to static files (dist/) that the gateway serves at `/`. */
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `vite` (dev) forwards the API to a gateway on its default port, so the console can be
// worked on with hot reload against a running `airlock demo`.
const gateway = "http://127.0.0.1:7070";

export default defineConfig({
  base: "/",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
  },
  server: {
    proxy: {
      "/v1": gateway,
      "/auth": gateway,
    },
  },
});
