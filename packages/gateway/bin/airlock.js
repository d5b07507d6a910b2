#!/usr/bin/env node
// The installed `airlock` command. It exists before the first build, so npm can link it.
import("../dist/cli/airlock.js").catch((error) => {
  if (
    error?.code === "ERR_MODULE_NOT_FOUND" &&
    String(error.message).includes("dist/cli/airlock.js")
  ) {
    process.stderr.write("airlock: not built yet; run `npm run build` (npm start builds too)\n");
    process.exit(1);
  }
  throw error;
});
