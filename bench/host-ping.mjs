// Host ping benchmark: the server's CPU and memory while its host tracker pings `--hosts`
// simulator hosts every `host.ping.interval` seconds. tstack-simulator and tstack-server
// (SQLite) run as their own processes. The same server is first measured with no hosts for as
// long as the measurement window, then the hosts are added through the REST API, and once all are
// Connected the window covers `--periods` full ping intervals. Metric pushes are set to once an
// hour per host, so the window measures the pings and the VM sync that runs every ping interval.
// Usage: npm run bench -- host-ping [--hosts 10000] [--interval 60] [--periods 2] [--clients 50]
//        [--profile-dir DIR]
// --profile-dir writes a V8 CPU profile of tstack-server there when it exits.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { TstackClient } from "../packages/sdk/dist/index.js";
import { cpuSeconds, freePort, rssMiB } from "./lib/harness.mjs";
import { startServer, startSimulator, stop } from "./lib/processes.mjs";
import { pool } from "./lib/simulator-cloud.mjs";

const { values } = parseArgs({
  options: {
    hosts: { type: "string", default: "10000" },
    interval: { type: "string", default: "60" },
    periods: { type: "string", default: "2" },
    clients: { type: "string", default: "50" },
    "profile-dir": { type: "string" },
  },
});
const hostCount = Number(values.hosts);
const intervalSeconds = Number(values.interval);
const windowSeconds = intervalSeconds * Number(values.periods);
const clients = Number(values.clients);
const GiB = 1024 ** 3;
const MONITORING_INTERVAL_SECONDS = 3600;
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** Samples the server's and simulator's CPU time and the server's RSS once a second. */
async function measure(label, seconds, server, simulator) {
  const serverCpuBefore = cpuSeconds(server.pid);
  const simulatorCpuBefore = cpuSeconds(simulator.pid);
  const began = performance.now();
  const rss = [];

  while (performance.now() - began < seconds * 1000) {
    rss.push(rssMiB(server.pid));
    await sleep(1000);
  }

  const wallSeconds = (performance.now() - began) / 1000;
  return {
    label,
    wallSeconds,
    serverCpuPercent: ((cpuSeconds(server.pid) - serverCpuBefore) / wallSeconds) * 100,
    simulatorCpuPercent: ((cpuSeconds(simulator.pid) - simulatorCpuBefore) / wallSeconds) * 100,
    serverRssMeanMiB: rss.reduce((sum, value) => sum + value, 0) / rss.length,
    serverRssMaxMiB: Math.max(...rss),
  };
}

/** Adds the simulator hosts to one Simulator cluster, `clients` at a time. */
async function addHosts(admin) {
  const create = async (api, params) => (await admin.call(api, { params })).inventory;
  const zone = await create("createZone", { name: "host-ping" });
  const cluster = await create("createCluster", {
    zoneUuid: zone.uuid,
    name: "host-ping",
    hypervisorType: "Simulator",
  });
  let added = 0;
  const began = performance.now();

  await pool(hostCount, clients, async (index) => {
    await create("addSimulatorHost", {
      name: `ping-${index}`,
      managementIp: `ping-host-${index}`,
      clusterUuid: cluster.uuid,
      cpuCapacity: 64,
      memoryCapacity: 256 * GiB,
    });
    added++;

    if (added % 1000 === 0) {
      const seconds = (performance.now() - began) / 1000;
      console.error(`${added} hosts added in ${seconds.toFixed(0)} s`);
    }
  });

  return (performance.now() - began) / 1000;
}

const countHosts = async (admin, status) =>
  (await admin.query("queryHost", [`status=${status}`], { count: true })).total;

const dataDir = mkdtempSync(join(tmpdir(), "thp-bench-"));
const token = randomBytes(24).toString("hex");
const simulatorPort = await freePort();
const serverPort = await freePort();
const simulatorUrl = `http://127.0.0.1:${simulatorPort}`;
const url = `http://127.0.0.1:${serverPort}`;
const simulator = await startSimulator(simulatorPort, token);
let server;

try {
  const profileDir = values["profile-dir"];
  const nodeArgs = profileDir ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : [];
  server = await startServer({ port: serverPort, dataDir, simulatorUrl, token, nodeArgs });
  const admin = new TstackClient({ endpoint: url, pollIntervalMs: 20 });
  await admin.logInByAccount("admin", "password");
  await admin.call("updateGlobalConfig", {
    path: { category: "host", name: "ping.interval" },
    params: { value: String(intervalSeconds) },
  });
  // Each connected simulator host pushes metrics every monitoring.interval (10 s by default),
  // 1,000 POSTs/s for 10,000 hosts, which would swamp the pings. The maximum leaves
  // hosts/3600 pushes per second.
  await admin.call("updateGlobalConfig", {
    path: { category: "monitoring", name: "interval" },
    params: { value: String(MONITORING_INTERVAL_SECONDS) },
  });

  console.error(`measuring the server with no hosts for ${windowSeconds} s`);
  const baseline = await measure("no hosts", windowSeconds, server, simulator);

  const addSeconds = await addHosts(admin);
  const connectBegan = performance.now();

  while ((await countHosts(admin, "Connected")) < hostCount) {
    await sleep(1000);
  }

  const connectSeconds = (performance.now() - connectBegan) / 1000;
  console.error(`all ${hostCount} hosts Connected; measuring for ${windowSeconds} s`);
  const loaded = await measure(`${hostCount} hosts`, windowSeconds, server, simulator);
  const connectedAfter = await countHosts(admin, "Connected");
  const hostIntervals = hostCount * (loaded.wallSeconds / intervalSeconds);
  const extraCpuSeconds =
    ((loaded.serverCpuPercent - baseline.serverCpuPercent) / 100) * loaded.wallSeconds;

  console.log(
    `\nHost ping: ${hostCount} simulator hosts pinged every ${intervalSeconds} s, metric pushes every ${MONITORING_INTERVAL_SECONDS} s, SQLite. Adding them took ${addSeconds.toFixed(1)} s with ${clients} clients, the last became Connected ${connectSeconds.toFixed(1)} s later; ${connectedAfter} were Connected after the window.\n`,
  );
  console.log(
    "| phase | window s | server CPU % of one core | server RSS mean MiB | server RSS max MiB | simulator CPU % |",
  );
  console.log("| --- | --- | --- | --- | --- | --- |");

  for (const row of [baseline, loaded]) {
    console.log(
      `| ${row.label} | ${row.wallSeconds.toFixed(0)} | ${row.serverCpuPercent.toFixed(1)} | ${row.serverRssMeanMiB.toFixed(0)} | ${row.serverRssMaxMiB.toFixed(0)} | ${row.simulatorCpuPercent.toFixed(1)} |`,
    );
  }

  // Besides the ping, each host gets a VM sync per ping interval and two monitoring reconciles
  // a minute, so this is the cost of one host for one interval, not of the ping alone.
  console.log(
    `\nServer CPU per host and ping interval above the baseline: ${((extraCpuSeconds / hostIntervals) * 1e6).toFixed(0)} µs (${hostIntervals.toFixed(0)} host intervals in the window).\n`,
  );
  console.log(
    JSON.stringify({
      metric: `host-ping.server_cpu_percent.${hostCount}`,
      value: Number(loaded.serverCpuPercent.toFixed(2)),
      unit: "% of one core",
      hosts: hostCount,
      intervalSeconds,
      addSeconds: Number(addSeconds.toFixed(1)),
      connectedAfter,
      cpuMicrosPerHostInterval: Math.round((extraCpuSeconds / hostIntervals) * 1e6),
      baseline,
      loaded,
    }),
  );
} finally {
  await stop(server);
  await stop(simulator);
  rmSync(dataDir, { recursive: true, force: true });
}
