#!/usr/bin/env node
// Runs the whole test suite from a fresh clone: installs what is missing (npm dependencies, and
// the Debian packages the tests use when running as root), builds, then runs Vitest. Arguments
// are passed to Vitest, so `npm test -- packages/server` runs one package.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;

function step(command, args) {
  console.log(`\n> ${command} ${args.join(" ")}`);
  execFileSync(command, args, { cwd: root, stdio: "inherit" });
}

if (!existsSync(join(root, "node_modules", ".package-lock.json"))) {
  step("npm", ["ci", "--no-audit", "--no-fund"]);
}

if (process.getuid?.() === 0 && existsSync("/usr/bin/apt-get")) {
  step("bash", ["scripts/install-host-packages.sh"]);
} else {
  console.log(
    "not root: skipping the Debian package check; tests need the packages in scripts/install-host-packages.sh",
  );
}

step("npm", ["run", "build"]);

const reportDir = mkdtempSync(join(tmpdir(), "tstack-test-report-"));
const report = join(reportDir, "report.json");
const vitest = spawnSync(
  "npx",
  [
    "vitest",
    "run",
    "--reporter=default",
    "--reporter=json",
    `--outputFile.json=${report}`,
    ...process.argv.slice(2),
  ],
  {
    cwd: root,
    stdio: "inherit",
  },
);

// The plain closing line, for tools that read a summary rather than Vitest's own format.
if (existsSync(report)) {
  const result = JSON.parse(readFileSync(report, "utf8"));
  const skipped = result.numPendingTests + result.numTodoTests;
  console.log(
    `\n${result.numPassedTests} passed, ${result.numFailedTests} failed, ${skipped} skipped`,
  );
}

rmSync(reportDir, { recursive: true, force: true });
process.exit(vitest.status ?? 1);
