import { readFileSync } from "node:fs";

// Both src/version.ts and dist/version.js sit one level below the package root.
const packageJson = JSON.parse(
  readFileSync(new URL("../package.json", import.meta.url), "utf8"),
) as { version: string };

/** Version of the agent package, returned by `/host/ping`. */
export const AGENT_VERSION = packageJson.version;
