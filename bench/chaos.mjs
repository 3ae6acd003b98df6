// Chaos benchmark: the chaos test of packages/server/test at full size. tstack-simulator and
// tstack-server (SQLite) run as their own processes. `--workers` clients run `--ops` random VM
// and volume operations: create, start, stop, reboot, destroy and expunge of VMs, and create,
// delete, expunge, attach and detach of data volumes. Meanwhile random faults are injected into
// agent commands, and the server is SIGKILLed and restarted every `--kill-every` seconds. Then
// the invariants between the database and the simulator are checked. Every violation is
// printed, and the exit code is 1 when there is any.
// The test's TypeScript is loaded through Vite, which vitest already depends on.
// Usage: npm run bench -- chaos [--ops 10000] [--minutes 25] [--hosts 20] [--workers 8]
//        [--kill-every 5] [--settle 120] [--server-log FILE]
// --server-log appends the output of every tstack-server process (log level warn) to FILE.
import { parseArgs } from "node:util";
import { runnerImport } from "vite";
import { root } from "./lib/harness.mjs";

const { values } = parseArgs({
  options: {
    ops: { type: "string", default: "10000" },
    minutes: { type: "string", default: "25" },
    hosts: { type: "string", default: "20" },
    workers: { type: "string", default: "8" },
    "kill-every": { type: "string", default: "5" },
    settle: { type: "string", default: "120" },
    "server-log": { type: "string" },
  },
});
const { module } = await runnerImport(`${root}packages/server/test/chaos/run.ts`, {
  configFile: false,
  logLevel: "warn",
});
const began = performance.now();
const result = await module.runChaos({
  hosts: Number(values.hosts),
  // A /16 leaves room for every VM that 10,000 operations can create.
  cidr: "10.62.0.0/16",
  workers: Number(values.workers),
  ops: Number(values.ops),
  durationMs: Number(values.minutes) * 60_000,
  killEveryMs: Number(values["kill-every"]) * 1000,
  settleMs: Number(values.settle) * 1000,
  serverLog: values["server-log"],
  onProgress: (done, kills) => {
    const seconds = (performance.now() - began) / 1000;
    console.error(`${done} operations and ${kills} SIGKILLs in ${seconds.toFixed(0)} s`);
  },
});

console.log(
  `\nChaos: ${result.operations} operations by ${values.workers} clients on ${values.hosts} simulator hosts in ${result.chaosSeconds.toFixed(0)} s, ${result.kills} SIGKILLs of tstack-server, settled in ${result.settleSeconds.toFixed(0)} s; ${result.vms} VMs and ${result.volumes} data volumes created.\n`,
);
console.log("| operation | succeeded | failed |");
console.log("| --- | --- | --- |");

for (const [name, tally] of Object.entries(result.counts).sort()) {
  console.log(`| ${name} | ${tally.ok} | ${tally.failed} |`);
}

console.log(
  `\n${result.violations.length} invariant violations${result.violations.length ? ":" : "."}`,
);

for (const violation of result.violations) {
  console.log(`- ${violation}`);
}

console.log(
  JSON.stringify({
    metric: "chaos.violations",
    value: result.violations.length,
    unit: "violations",
    operations: result.operations,
    kills: result.kills,
    chaosSeconds: Math.round(result.chaosSeconds),
    settleSeconds: Math.round(result.settleSeconds),
    counts: result.counts,
  }),
);
process.exitCode = result.violations.length > 0 ? 1 : 0;
