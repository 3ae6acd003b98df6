#!/usr/bin/env node
// Runs one benchmark from bench/ by name: `npm run bench -- rest-core [options]`.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;
const [name, ...args] = process.argv.slice(2);
const available = readdirSync(`${root}bench`)
  .filter((file) => file.endsWith(".mjs") && !file.includes("server"))
  .map((file) => file.replace(/\.mjs$/, ""));

if (!name || !existsSync(`${root}bench/${name}.mjs`)) {
  console.error(`usage: npm run bench -- <name> [options]; benchmarks: ${available.join(", ")}`);
  process.exit(2);
}

const built = spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" });

if (built.status !== 0) {
  process.exit(built.status ?? 1);
}

const result = spawnSync(process.execPath, [`bench/${name}.mjs`, ...args], {
  cwd: root,
  stdio: "inherit",
});
process.exit(result.status ?? 1);
