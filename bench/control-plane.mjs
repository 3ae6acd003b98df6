// Control-plane benchmark: VM creates through the REST API on simulator hosts, each polled until
// the VM is Running, with `--clients` concurrent clients. tstack-server and tstack-simulator run
// as their own processes, so the server's CPU and RSS are its own.
// Usage: npm run bench -- control-plane [--vms 1,10,100,1000] [--hosts 1000] [--clients 100]
//        [--poll-ms 20] [--wait-seconds 0] [--profile-dir DIR] [--database postgres://...]
//        [--server FILE]
// --server FILE runs another build of tstack-server (default packages/server/dist/main.js), so
// a before/after pair runs back to back on the same machine.
// --wait-seconds N long-polls each job with `?waitSeconds=N` instead of polling every --poll-ms.
// --profile-dir writes a V8 CPU profile of tstack-server there when it exits.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { TstackClient } from "@tstack/sdk";

const { values } = parseArgs({
  options: {
    vms: { type: "string", default: "1,10,100,1000" },
    hosts: { type: "string", default: "1000" },
    clients: { type: "string", default: "100" },
    "poll-ms": { type: "string", default: "20" },
    "wait-seconds": { type: "string", default: "0" },
    "profile-dir": { type: "string" },
    database: { type: "string" },
    server: { type: "string", default: "packages/server/dist/main.js" },
  },
});
const rounds = values.vms.split(",").map(Number);
const hostCount = Number(values.hosts);
const clients = Number(values.clients);
const pollMs = Number(values["poll-ms"]);
const waitSeconds = Number(values["wait-seconds"]);
const root = new URL("..", import.meta.url).pathname;
const GiB = 1024 ** 3;
const CLOCK_TICKS = 100;

async function freePort() {
  const server = createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

async function launch(args, env, ready) {
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });

  for (let attempt = 0; attempt < 400; attempt++) {
    if (await ready().catch(() => false)) {
      return child;
    }

    await new Promise((done) => setTimeout(done, 50));
  }

  child.kill("SIGKILL");
  throw new Error(`${args[0]} did not start`);
}

/** CPU seconds and resident memory of a process, from /proc. */
function processUsage(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (name) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { cpuSeconds, rssMiB: kib("VmRSS") / 1024, peakRssMiB: kib("VmHWM") / 1024 };
}

/** Runs `work` over `count` items with `limit` in flight. */
async function pool(count, limit, work) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      await work(next++);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

const percentile = (sorted, q) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

async function buildCloud(admin) {
  const create = async (api, params) => (await admin.call(api, { params })).inventory;
  const zone = await create("createZone", { name: "bench" });
  const cluster = await create("createCluster", {
    zoneUuid: zone.uuid,
    name: "bench",
    hypervisorType: "Simulator",
  });
  await pool(hostCount, 50, (index) =>
    create("addSimulatorHost", {
      name: `bench-${index}`,
      managementIp: `bench-host-${index}`,
      clusterUuid: cluster.uuid,
      cpuCapacity: 64,
      memoryCapacity: 256 * GiB,
    }),
  );

  const bs = await create("addSimulatorBackupStorage", {
    name: "bench",
    url: "/bench/backup",
    totalCapacity: 1024 * GiB,
    availableCapacity: 1024 * GiB,
  });
  await admin.call("attachBackupStorageToZone", {
    path: { zoneUuid: zone.uuid, backupStorageUuid: bs.uuid },
  });
  // The simulator never downloads, so the address (TEST-NET-1, RFC 5737) is never contacted.
  const image = await create("addImage", {
    name: "bench",
    url: "http://192.0.2.10/images/guest.qcow2",
    format: "qcow2",
    mediaType: "RootVolumeTemplate",
    backupStorageUuids: [bs.uuid],
  });

  const ps = await create("addSimulatorPrimaryStorage", {
    name: "bench",
    url: "/bench/primary",
    zoneUuid: zone.uuid,
    totalCapacity: 1_000_000 * GiB,
    availableCapacity: 1_000_000 * GiB,
  });
  await admin.call("attachPrimaryStorageToCluster", {
    path: { clusterUuid: cluster.uuid, primaryStorageUuid: ps.uuid },
  });

  const l2 = await create("createL2NoVlanNetwork", {
    name: "bench",
    zoneUuid: zone.uuid,
    physicalInterface: "tsimeth0",
  });
  await admin.call("attachL2NetworkToCluster", {
    path: { l2NetworkUuid: l2.uuid, clusterUuid: cluster.uuid },
  });
  const l3 = await create("createL3Network", {
    name: "bench",
    l2NetworkUuid: l2.uuid,
    category: "Private",
  });
  await admin.call("addIpRangeByNetworkCidr", {
    path: { l3NetworkUuid: l3.uuid },
    params: { name: "bench", networkCidr: "10.64.0.0/16" },
  });

  const offering = await create("createInstanceOffering", {
    name: "bench",
    cpuNum: 1,
    memorySize: 256 * 1024 * 1024,
  });
  return { imageUuid: image.uuid, l3NetworkUuid: l3.uuid, instanceOfferingUuid: offering.uuid };
}

const FAILURES_SHOWN = 5;
let failuresShown = 0;

/** Prints the first few failed creates, so a failure count comes with its reasons. */
function noteFailure(text) {
  if (failuresShown < FAILURES_SHOWN) {
    failuresShown++;
    console.error(`failed VM create: ${text.slice(0, 600)}`);
  }
}

/** Creates `count` VMs with raw HTTP and returns the 202 and create-to-Running latencies. */
async function createVms(url, headers, cloud, count) {
  const accepted = [];
  const running = [];
  let failures = 0;

  await pool(count, clients, async (index) => {
    const began = performance.now();
    const response = await fetch(`${url}/zstack/v1/vm-instances`, {
      method: "POST",
      headers,
      body: JSON.stringify({
        params: {
          name: `bench-vm-${index}`,
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      }),
    });
    const body = await response.json();

    if (response.status !== 202) {
      failures++;
      noteFailure(`create answered HTTP ${response.status}: ${JSON.stringify(body)}`);
      return;
    }

    accepted.push(performance.now() - began);
    const location =
      waitSeconds > 0 ? `${body.location}?waitSeconds=${waitSeconds}` : body.location;

    for (;;) {
      const poll = await fetch(location, { headers });
      const result = await poll.json().catch(() => ({}));

      if (poll.status === 200 && result.inventory?.state === "Running") {
        running.push(performance.now() - began);
        return;
      }

      if (poll.status !== 202) {
        failures++;
        noteFailure(`job answered HTTP ${poll.status}: ${JSON.stringify(result)}`);
        return;
      }

      if (waitSeconds === 0) {
        await new Promise((done) => setTimeout(done, pollMs));
      }
    }
  });

  return { accepted, running, failures };
}

const dataDir = mkdtempSync(join(tmpdir(), "tsim-bench-"));
const token = randomBytes(24).toString("hex");
const simulatorPort = await freePort();
const serverPort = await freePort();
const simulatorUrl = `http://127.0.0.1:${simulatorPort}`;
const url = `http://127.0.0.1:${serverPort}`;
const simulator = await launch(
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
let server;

try {
  const profile = values["profile-dir"]
    ? ["--cpu-prof", "--cpu-prof-dir", values["profile-dir"]]
    : [];
  server = await launch(
    [
      ...profile,
      values.server,
      "--listen",
      `127.0.0.1:${serverPort}`,
      "--data-dir",
      dataDir,
      "--log-level",
      "warn",
      "--simulator",
      simulatorUrl,
      ...(values.database ? ["--database", values.database] : []),
    ],
    { TSTACK_SIMULATOR_TOKEN: token, TSTACK_ADMIN_PASSWORD: "password" },
    async () => (await fetch(`${url}/zstack/v1/management-nodes/ready`)).status === 200,
  );

  const admin = new TstackClient({ endpoint: url, pollIntervalMs: 20 });
  await admin.logInByAccount("admin", "password");
  const setupBegan = performance.now();
  const cloud = await buildCloud(admin);
  const setupSeconds = (performance.now() - setupBegan) / 1000;
  const password = createHash("sha512").update("password").digest("hex");
  const login = await fetch(`${url}/zstack/v1/accounts/login`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ logInByAccount: { accountName: "admin", password } }),
  });
  const session = (await login.json()).inventory.uuid;
  const headers = { authorization: `OAuth ${session}`, "content-type": "application/json" };
  const rows = [];

  for (const count of rounds) {
    const before = processUsage(server.pid);
    const simulatorBefore = processUsage(simulator.pid);
    const began = performance.now();
    const result = await createVms(url, headers, cloud, count);
    const wallSeconds = (performance.now() - began) / 1000;
    const after = processUsage(server.pid);
    const simulatorAfter = processUsage(simulator.pid);
    const accepted = result.accepted.sort((a, b) => a - b);
    const running = result.running.sort((a, b) => a - b);
    rows.push({
      vms: count,
      failures: result.failures,
      wallSeconds,
      vmsPerSecond: result.running.length / wallSeconds,
      acceptedP50: percentile(accepted, 0.5),
      acceptedP99: percentile(accepted, 0.99),
      runningP50: percentile(running, 0.5),
      runningP99: percentile(running, 0.99),
      serverCpuPercent: ((after.cpuSeconds - before.cpuSeconds) / wallSeconds) * 100,
      serverCpuMsPerVm: ((after.cpuSeconds - before.cpuSeconds) * 1000) / count,
      simulatorCpuPercent:
        ((simulatorAfter.cpuSeconds - simulatorBefore.cpuSeconds) / wallSeconds) * 100,
      serverRssMiB: after.rssMiB,
      serverPeakRssMiB: after.peakRssMiB,
    });
  }

  const database = values.database ? "PostgreSQL" : "SQLite";
  console.log(
    `\nControl plane: ${hostCount} simulator hosts (added in ${setupSeconds.toFixed(1)} s), ${clients} clients, ${database}, ${waitSeconds > 0 ? `long polls of ${waitSeconds} s` : `polls every ${pollMs} ms`}\n`,
  );
  console.log(
    "| VMs | failed | wall s | VMs/s | 202 p50 ms | 202 p99 ms | to Running p50 ms | to Running p99 ms | server CPU % | server CPU ms/VM | simulator CPU % | server RSS MiB |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");

  for (const row of rows) {
    console.log(
      `| ${row.vms} | ${row.failures} | ${row.wallSeconds.toFixed(1)} | ${row.vmsPerSecond.toFixed(1)} | ${row.acceptedP50.toFixed(0)} | ${row.acceptedP99.toFixed(0)} | ${row.runningP50.toFixed(0)} | ${row.runningP99.toFixed(0)} | ${row.serverCpuPercent.toFixed(0)} | ${row.serverCpuMsPerVm.toFixed(1)} | ${row.simulatorCpuPercent.toFixed(0)} | ${row.serverRssMiB.toFixed(0)} |`,
    );
  }

  const last = rows[rows.length - 1];
  console.log(
    JSON.stringify({
      metric: `control-plane.vms_per_second.${last.vms}`,
      value: Number(last.vmsPerSecond.toFixed(2)),
      unit: "VMs/s",
      database,
      hosts: hostCount,
      clients,
      waitSeconds,
      pollMs,
      rows,
    }),
  );
} finally {
  server?.kill("SIGTERM");
  simulator.kill("SIGTERM");
  await new Promise((done) => setTimeout(done, 1000));
  rmSync(dataDir, { recursive: true, force: true });
}
