// Monitoring benchmark fed by the simulator: `--vms` simulator VMs on `--hosts` simulator hosts
// push their metrics every 10 s through the signed ingest route, as agents do. tstack-server
// (SQLite) and tstack-simulator run as their own processes. The VMs are created through the
// REST API, then the server is stopped while one hour of history for exactly those VMs' series
// is written with the server's own store code, and started again on the same data directory.
// Measures the server's CPU and memory while the simulator pushes, the database size, and the
// p99 of one-hour GetMetricData queries for one VM and for the sum over all VMs.
// Usage: npm run bench -- monitoring-simulator [--vms 1000] [--hosts 100] [--seconds 60]
//        [--queries 100]
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { TstackClient } from "../packages/sdk/dist/index.js";
import { openDatabase } from "../packages/server/dist/db/connect.js";
import { MetricStore } from "../packages/server/dist/monitoring/store.js";
import { HttpSimulatorControl } from "../packages/simulator/dist/index.js";
import { cpuSeconds, freePort, root, rssMiB } from "./lib/harness.mjs";
import { timeQueries } from "./lib/metric-queries.mjs";
import { buildSimulatorCloud, pool } from "./lib/simulator-cloud.mjs";

const { values } = parseArgs({
  options: {
    vms: { type: "string", default: "1000" },
    hosts: { type: "string", default: "100" },
    seconds: { type: "string", default: "60" },
    queries: { type: "string", default: "100" },
  },
});
const vmCount = Number(values.vms);
const hostCount = Number(values.hosts);
const ingestSeconds = Number(values.seconds);
const queryRuns = Number(values.queries);
const INTERVAL_MS = 10_000;
const CLIENTS = 50;
const dataDir = mkdtempSync(join(tmpdir(), "tmn-bench-"));
const token = randomBytes(24).toString("hex");

async function launch(args, env, ready) {
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });

  for (let attempt = 0; attempt < 1200; attempt++) {
    if (await ready().catch(() => false)) {
      return child;
    }

    await new Promise((done) => setTimeout(done, 50));
  }

  child.kill("SIGKILL");
  throw new Error(`${args[0]} did not start within 60 s`);
}

async function stop(child) {
  if (child && child.exitCode === null) {
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    await exited;
  }
}

/** Returns the series the simulator pushes for one VM, as [namespace, metricName, labels]. */
function vmSeries(vm) {
  const series = [
    ["ZStack/VM", "CPUUsedUtilization", { VMUuid: vm.vmUuid }],
    ["ZStack/VM", "CPUTimeSeconds", { VMUuid: vm.vmUuid }],
    ["ZStack/VM", "MemoryUsedBytes", { VMUuid: vm.vmUuid }],
  ];

  for (const tapName of vm.tapNames) {
    for (const name of [
      "NetworkInBytes",
      "NetworkInPackets",
      "NetworkOutBytes",
      "NetworkOutPackets",
    ]) {
      series.push(["ZStack/VM", name, { VMUuid: vm.vmUuid, InterfaceName: tapName }]);
    }
  }

  for (const path of vm.disks) {
    const volumeUuid = /\/vol-([0-9a-f]{32})\//.exec(path)?.[1];

    for (const name of ["DiskReadBytes", "DiskWriteBytes", "DiskReadOps", "DiskWriteOps"]) {
      if (volumeUuid) {
        series.push(["ZStack/Volume", name, { VolumeUuid: volumeUuid, VMUuid: vm.vmUuid }]);
      }
    }
  }

  return series;
}

/** Writes one hour of points of every series, ending at `endTime`, before the server restarts. */
async function prefill(series, endTime) {
  const db = await openDatabase(join(dataDir, "tstack.db"));
  const store = new MetricStore(db.kysely, db.dialect);
  const started = performance.now();
  let rows = 0;

  for (let time = endTime - 3_600_000, step = 0; time < endTime; time += INTERVAL_MS, step++) {
    const samples = series.map(([namespace, metricName, labels], index) => ({
      namespace,
      metricName,
      labels,
      resourceUuid: labels.VolumeUuid ?? labels.VMUuid,
      value: (step * 7 + index) % 100,
    }));
    await store.insert(time, samples);
    rows += samples.length;
  }

  await db.close();
  return { rows, seconds: (performance.now() - started) / 1000 };
}

const fmt = (value) => value.toFixed(1);
const dbBytes = () =>
  ["tstack.db", "tstack.db-wal"].reduce(
    (sum, file) => sum + (statSync(join(dataDir, file), { throwIfNoEntry: false })?.size ?? 0),
    0,
  );
const simulatorPort = await freePort();
const serverPort = await freePort();
const simulatorUrl = `http://127.0.0.1:${simulatorPort}`;
const url = `http://127.0.0.1:${serverPort}`;
const serverEnv = { TSTACK_SIMULATOR_TOKEN: token, TSTACK_ADMIN_PASSWORD: "password" };
const startServer = () =>
  launch(
    [
      "packages/server/dist/main.js",
      "--listen",
      `127.0.0.1:${serverPort}`,
      "--data-dir",
      dataDir,
      "--log-level",
      "warn",
      "--simulator",
      simulatorUrl,
    ],
    serverEnv,
    async () => (await fetch(`${url}/zstack/v1/management-nodes/ready`)).status === 200,
  );
let simulator;
let server;

try {
  simulator = await launch(
    [
      "packages/simulator/dist/main.js",
      "--listen",
      `127.0.0.1:${simulatorPort}`,
      "--log-level",
      "warn",
    ],
    { TSTACK_SIMULATOR_TOKEN: token },
    // An unsigned admin request gets 401 once the simulator listens.
    async () =>
      (await fetch(`${simulatorUrl}/simulator/faults/list`, { method: "POST" })).status === 401,
  );
  server = await startServer();
  let admin = new TstackClient({ endpoint: url, pollIntervalMs: 20 });
  await admin.logInByAccount("admin", "password");
  const setupBegan = performance.now();
  const cloud = await buildSimulatorCloud(admin, hostCount);
  await pool(vmCount, CLIENTS, (index) =>
    admin.call("createVmInstance", {
      params: {
        name: `bench-vm-${index}`,
        imageUuid: cloud.imageUuid,
        instanceOfferingUuid: cloud.instanceOfferingUuid,
        l3NetworkUuids: [cloud.l3NetworkUuid],
      },
    }),
  );
  console.log(
    `setup: ${hostCount} simulator hosts and ${vmCount} VMs in ${fmt((performance.now() - setupBegan) / 1000)} s`,
  );

  await stop(server);
  const control = new HttpSimulatorControl(simulatorUrl, token);
  const nodes = await control.state();
  const vms = nodes.flatMap((node) => node.vms ?? []);
  const series = vms.flatMap(vmSeries);
  const filled = await prefill(series, Date.now());
  console.log(
    `prefill: ${vms.length} VMs, ${series.length} series, ${filled.rows} points in ${fmt(filled.seconds)} s, database ${fmt(dbBytes() / 2 ** 20)} MiB`,
  );

  server = await startServer();
  admin = new TstackClient({ endpoint: url, pollIntervalMs: 20 });
  await admin.logInByAccount("admin", "password");
  // The first monitoring config reconcile runs 30 s after a start. Waiting past it keeps the
  // start-up work out of the measured window.
  await new Promise((done) => setTimeout(done, 40_000));

  const serverCpuBefore = cpuSeconds(server.pid);
  const simulatorCpuBefore = cpuSeconds(simulator.pid);
  const rssBefore = rssMiB(server.pid);
  const sizeBefore = dbBytes();
  const windowStart = Math.floor(Date.now() / 1000);
  const wallBefore = performance.now();
  let peakRss = rssBefore;

  while (performance.now() - wallBefore < ingestSeconds * 1000) {
    await new Promise((done) => setTimeout(done, 1000));
    peakRss = Math.max(peakRss, rssMiB(server.pid));
  }

  const wallSeconds = (performance.now() - wallBefore) / 1000;
  const serverCpu = cpuSeconds(server.pid) - serverCpuBefore;
  const simulatorCpu = cpuSeconds(simulator.pid) - simulatorCpuBefore;
  const reporting = await admin.call("getMetricData", {
    query: {
      namespace: "ZStack/VM",
      metricName: "CPUUsedUtilization",
      startTime: String(windowStart),
      period: String(Math.max(10, Math.floor(wallSeconds))),
      groupBy: "VMUuid",
    },
  });
  const reportingVms = new Set(reporting.data.map((point) => point.labels.VMUuid)).size;
  console.log(
    `ingest: ${reportingVms} of ${vms.length} VMs reported in ${fmt(wallSeconds)} s: server CPU ${fmt((serverCpu / wallSeconds) * 100)}% of one core, RSS ${fmt(rssBefore)} MiB before, ${fmt(peakRss)} MiB peak (VmHWM ${fmt(rssMiB(server.pid, "VmHWM"))} MiB); database ${fmt(sizeBefore / 2 ** 20)} MiB before, ${fmt(dbBytes() / 2 ** 20)} MiB after; simulator CPU ${fmt((simulatorCpu / wallSeconds) * 100)}% of one core`,
  );

  const hourAgo = () => String(Math.floor(Date.now() / 1000) - 3590);
  const one = await timeQueries(admin, queryRuns, (run) => ({
    namespace: "ZStack/VM",
    metricName: "CPUUsedUtilization",
    labels: `VMUuid=${vms[(run * 37) % vms.length].vmUuid}`,
    startTime: hourAgo(),
    period: "60",
  }));
  console.log(
    `one VM, one hour, period 60 s: p50 ${fmt(one.p50)} ms, p99 ${fmt(one.p99)} ms (${queryRuns} queries, ${one.points} points)`,
  );

  const aggregateRuns = Math.max(10, Math.floor(queryRuns / 5));
  const all = await timeQueries(admin, aggregateRuns, () => ({
    namespace: "ZStack/VM",
    metricName: "CPUUsedUtilization",
    startTime: hourAgo(),
    period: "60",
    aggregate: "sum",
    groupBy: "",
  }));
  console.log(
    `sum over all VMs, one hour, period 60 s: p50 ${fmt(all.p50)} ms, p99 ${fmt(all.p99)} ms (${aggregateRuns} queries, ${all.points} points)`,
  );
} finally {
  await stop(server);
  await stop(simulator);
  rmSync(dataDir, { recursive: true, force: true });
}
