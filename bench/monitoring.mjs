// Monitoring benchmark: 1,000 VMs' metric batches pushed every 10 s to tstack-server (SQLite)
// through the signed ingest route, with one hour of history already stored. Measures the server
// process's CPU and memory while it ingests, the database size, and the p99 of one-hour
// GetMetricData queries for one VM and for the sum over all VMs.
// Usage: npm run bench -- monitoring [--vms 1000] [--seconds 60] [--queries 100]
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { signRequest } from "../packages/agent/dist/auth.js";
import { TstackClient } from "../packages/sdk/dist/index.js";
import { openDatabase } from "../packages/server/dist/db/connect.js";
import { MetricStore } from "../packages/server/dist/monitoring/store.js";
import { percentile, timeQueries } from "./lib/metric-queries.mjs";

const { values } = parseArgs({
  options: {
    vms: { type: "string", default: "1000" },
    seconds: { type: "string", default: "60" },
    queries: { type: "string", default: "100" },
  },
});
const vmCount = Number(values.vms);
const ingestSeconds = Number(values.seconds);
const queryRuns = Number(values.queries);
const INTERVAL_MS = 10_000;
const VMS_PER_BATCH = 50;
const root = new URL("..", import.meta.url).pathname;
const dataDir = mkdtempSync(join(tmpdir(), "tmon-bench-"));
const agentDir = mkdtempSync(join(tmpdir(), "tmon-bench-agent-"));
const hex = (n) => n.toString(16).padStart(32, "0");
const vms = Array.from({ length: vmCount }, (_, i) => ({
  vm: hex(0x1000000 + i),
  volume: hex(0x2000000 + i),
}));

/** Returns the 11 samples one VM reports per interval: CPU, CPU time, memory, one NIC, one volume. */
function vmSamples({ vm, volume }, step) {
  const nic = { VMUuid: vm, InterfaceName: `vnic${vm.slice(-8)}.0` };
  const disk = { VolumeUuid: volume, VMUuid: vm };
  const sample = (namespace, metricName, labels, value) => ({
    namespace,
    metricName,
    labels,
    value,
  });

  return [
    sample(
      "ZStack/VM",
      "CPUUsedUtilization",
      { VMUuid: vm },
      (step * 7 + Number.parseInt(vm.slice(-3), 16)) % 100,
    ),
    sample("ZStack/VM", "CPUTimeSeconds", { VMUuid: vm }, step * 2.5),
    sample("ZStack/VM", "MemoryUsedBytes", { VMUuid: vm }, 134_217_728 + step),
    sample("ZStack/VM", "NetworkInBytes", nic, 1000 + (step % 10)),
    sample("ZStack/VM", "NetworkOutBytes", nic, 2000 + (step % 10)),
    sample("ZStack/VM", "NetworkInPackets", nic, 10),
    sample("ZStack/VM", "NetworkOutPackets", nic, 20),
    sample("ZStack/Volume", "DiskReadBytes", disk, 4096 * (step % 4)),
    sample("ZStack/Volume", "DiskWriteBytes", disk, 8192 * (step % 3)),
    sample("ZStack/Volume", "DiskReadOps", disk, step % 4),
    sample("ZStack/Volume", "DiskWriteOps", disk, step % 3),
  ];
}

function resourceOf(sample) {
  return sample.namespace === "ZStack/Volume" ? sample.labels.VolumeUuid : sample.labels.VMUuid;
}

/** Stores one hour of history through the server's own store code, before the server starts. */
async function prefill(endTime) {
  const db = await openDatabase(join(dataDir, "tstack.db"));
  const store = new MetricStore(db.kysely, db.dialect);
  const started = performance.now();
  let rows = 0;

  for (let time = endTime - 3_600_000, step = 0; time < endTime; time += INTERVAL_MS, step++) {
    const samples = vms
      .flatMap((vm) => vmSamples(vm, step))
      .map((sample) => ({ ...sample, resourceUuid: resourceOf(sample) }));
    await store.insert(time, samples);
    rows += samples.length;
  }

  const seconds = (performance.now() - started) / 1000;
  await db.close();
  return { rows, seconds };
}

async function freePort() {
  const server = createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

async function startServer() {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      "packages/server/dist/main.js",
      "--listen",
      `127.0.0.1:${port}`,
      "--data-dir",
      dataDir,
      "--log-level",
      "warn",
    ],
    {
      cwd: root,
      env: { ...process.env, TSTACK_ADMIN_PASSWORD: "password" },
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  const url = `http://127.0.0.1:${port}`;

  for (let attempt = 0; attempt < 400; attempt++) {
    if (
      await fetch(`${url}/zstack/v1/zones/${"0".repeat(32)}`).then(
        () => true,
        () => false,
      )
    ) {
      return { child, url };
    }

    await new Promise((done) => setTimeout(done, 50));
  }

  throw new Error("server did not start within 20 s");
}

/** Adds this machine as a host, so the benchmark can sign batches with a real host secret. */
async function addHost(admin) {
  const config = (name, value) =>
    admin.call("updateGlobalConfig", { path: { category: "host", name }, params: { value } });
  await config("agent.dataDir", agentDir);
  await config("agent.port", String(await freePort()));
  const zone = (await admin.call("createZone", { params: { name: "zone" } })).inventory;
  const cluster = (
    await admin.call("createCluster", {
      params: { zoneUuid: zone.uuid, name: "kvm", hypervisorType: "KVM" },
    })
  ).inventory;
  const host = (
    await admin.call("addKVMHost", {
      params: {
        name: "local",
        managementIp: "127.0.0.1",
        username: "root",
        clusterUuid: cluster.uuid,
      },
    })
  ).inventory;
  return {
    hostUuid: host.uuid,
    secret: readFileSync(join(agentDir, "host-secret"), "utf8").trim(),
  };
}

function processUsage(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status)?.[1] ?? 0);
  return {
    cpuTicks: Number(fields[11]) + Number(fields[12]),
    rssKiB: kib("VmRSS"),
    hwmKiB: kib("VmHWM"),
  };
}

async function pushBatches(url, host, step) {
  const path = `/zstack/asyncrest/monitoring/${host.hostUuid}`;
  const latencies = [];
  const time = Date.now();

  for (let start = 0; start < vms.length; start += VMS_PER_BATCH) {
    const samples = vms.slice(start, start + VMS_PER_BATCH).flatMap((vm) => vmSamples(vm, step));
    const body = JSON.stringify({ hostUuid: host.hostUuid, time, intervalSeconds: 10, samples });
    const headers = {
      "content-type": "application/json",
      commandpath: "/monitoring/samples",
      ...signRequest(host.secret, "POST", path, body),
    };
    const sent = performance.now();
    const response = await fetch(`${url}${path}`, { method: "POST", headers, body });
    const text = await response.text();

    if (!response.ok) {
      throw new Error(`ingest failed with HTTP ${response.status}: ${text}`);
    }

    latencies.push(performance.now() - sent);
  }

  return latencies;
}

const fmt = (value) => value.toFixed(1);
const filled = await prefill(Date.now());
const dbBytes = () =>
  ["tstack.db", "tstack.db-wal"].reduce(
    (sum, file) => sum + (statSync(join(dataDir, file), { throwIfNoEntry: false })?.size ?? 0),
    0,
  );
console.log(
  `prefill: ${filled.rows} points in ${fmt(filled.seconds)} s (${Math.round(filled.rows / filled.seconds)} rows/s in-process), database ${fmt(dbBytes() / 2 ** 20)} MiB`,
);

const server = await startServer();
let host;

try {
  const admin = new TstackClient({ endpoint: server.url, pollIntervalMs: 20 });
  await admin.logInByAccount("admin", "password");
  host = await addHost(admin);
  const idle = processUsage(server.child.pid);
  const ticksBefore = idle.cpuTicks;
  const wallBefore = performance.now();
  const ingestLatencies = [];
  let peakRss = idle.rssKiB;

  for (let step = 0; step * INTERVAL_MS < ingestSeconds * 1000; step++) {
    const due = wallBefore + step * INTERVAL_MS;
    await new Promise((done) => setTimeout(done, Math.max(0, due - performance.now())));
    ingestLatencies.push(...(await pushBatches(server.url, host, 360 + step)));
    peakRss = Math.max(peakRss, processUsage(server.child.pid).rssKiB);
  }

  await new Promise((done) =>
    setTimeout(done, Math.max(0, wallBefore + ingestSeconds * 1000 - performance.now())),
  );
  const after = processUsage(server.child.pid);
  const cpuSeconds = (after.cpuTicks - ticksBefore) / 100;
  const wallSeconds = (performance.now() - wallBefore) / 1000;
  console.log(
    `ingest: ${vmCount} VMs x 11 samples every 10 s for ${fmt(wallSeconds)} s: server CPU ${fmt((cpuSeconds / wallSeconds) * 100)}% of one core, RSS ${fmt(idle.rssKiB / 1024)} MiB before, ${fmt(peakRss / 1024)} MiB peak (VmHWM ${fmt(after.hwmKiB / 1024)} MiB); POST of ${VMS_PER_BATCH} VMs p50 ${fmt(percentile(ingestLatencies, 50))} ms p99 ${fmt(percentile(ingestLatencies, 99))} ms; database ${fmt(dbBytes() / 2 ** 20)} MiB`,
  );

  const hourAgo = () => String(Math.floor(Date.now() / 1000) - 3590);
  const one = await timeQueries(admin, queryRuns, (run) => ({
    namespace: "ZStack/VM",
    metricName: "CPUUsedUtilization",
    labels: `VMUuid=${vms[(run * 37) % vms.length].vm}`,
    startTime: hourAgo(),
    period: "60",
  }));
  console.log(
    `one VM, one hour, period 60 s: p50 ${fmt(one.p50)} ms, p99 ${fmt(one.p99)} ms (${queryRuns} queries, ${one.points} points)`,
  );

  const all = await timeQueries(admin, Math.max(10, Math.floor(queryRuns / 5)), () => ({
    namespace: "ZStack/VM",
    metricName: "CPUUsedUtilization",
    startTime: hourAgo(),
    period: "60",
    aggregate: "sum",
    groupBy: "",
  }));
  console.log(
    `sum over all VMs, one hour, period 60 s: p50 ${fmt(all.p50)} ms, p99 ${fmt(all.p99)} ms (${Math.max(10, Math.floor(queryRuns / 5))} queries, ${all.points} points)`,
  );
} finally {
  server.child.kill("SIGTERM");
  await new Promise((done) => server.child.once("exit", done));
  // The server started the agent as its own process; it is ended by the PID it recorded.
  try {
    const agentPid = Number(readFileSync(join(agentDir, "agent.pid"), "utf8").trim());

    if (Number.isInteger(agentPid) && agentPid > 1) {
      process.kill(agentPid, "SIGTERM");
    }
  } catch {
    // No agent was started, or it already stopped.
  }

  rmSync(dataDir, { recursive: true, force: true });
  rmSync(agentDir, { recursive: true, force: true });
}
