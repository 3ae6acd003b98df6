// Read-scale benchmark: 10,000 hosts and 100,000 VMs, then 50 concurrent clients (wrk) doing
// GET of a random VM by uuid, a filtered and sorted page of 100 VMs, and a count, against the
// plain Fastify constant route as the ceiling. The zone, clusters and instance offering are
// created through the REST API; the hosts and VMs are inserted with SQL into the stopped
// server's fresh database (see seedReadScale), then the server restarts on it.
// Usage: npm run bench -- read-scale [--hosts 10000] [--vms 100000] [--clusters 10]
//   [--seconds 10] [--clients 50] [--database postgres://...]
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  logIn,
  rssMiB,
  startServerProcess,
  stopServerProcess,
  TABLE_HEADER,
  tableRow,
  wrk,
} from "./lib/harness.mjs";
import { seedReadScale } from "./lib/seed.mjs";

const { values } = parseArgs({
  options: {
    hosts: { type: "string", default: "10000" },
    vms: { type: "string", default: "100000" },
    clusters: { type: "string", default: "10" },
    seconds: { type: "string", default: "10" },
    clients: { type: "string", default: "50" },
    database: { type: "string" },
  },
});
const counts = {
  hosts: Number(values.hosts),
  vms: Number(values.vms),
  clusters: Number(values.clusters),
};
const load = { clients: Number(values.clients), seconds: Number(values.seconds) };
const PASSWORD = "password";
// wrk picks each request's path at random from this many VMs, hosts or clusters.
const SAMPLE_SIZE = 20_000;

const dataDir = mkdtempSync(join(tmpdir(), "tstack-bench-read-"));
const database = values.database ?? join(dataDir, "tstack.db");
const serverArgs = (port) => [
  "packages/server/dist/main.js",
  "--listen",
  `127.0.0.1:${port}`,
  "--data-dir",
  dataDir,
  "--database",
  database,
  "--log-level",
  "warn",
];
const env = { TSTACK_ADMIN_PASSWORD: PASSWORD };

/** Calls an async API and polls its job to the end; returns the inventory. */
async function callApi(url, session, method, path, body) {
  const headers = { authorization: `OAuth ${session}`, "content-type": "application/json" };
  const accepted = await fetch(`${url}/zstack/v1${path}`, {
    method,
    headers,
    body: JSON.stringify(body),
  });
  const { location } = await accepted.json();

  for (;;) {
    const poll = await fetch(location, { headers });
    const text = await poll.text();

    if (poll.status === 200) {
      return JSON.parse(text).inventory;
    }

    if (poll.status !== 202) {
      throw new Error(`${method} ${path} failed with HTTP ${poll.status}: ${text}`);
    }

    await new Promise((done) => setTimeout(done, 20));
  }
}

function create(url, session, path, params) {
  return callApi(url, session, "POST", path, { params });
}

/**
 * Sets the host ping interval to a day, so that the server does not ping the seeded hosts, which
 * have no agent, while the bench runs. The VM tracer runs on the same interval.
 */
function switchOffPings(url, session) {
  return callApi(url, session, "PUT", "/global-configurations/host/ping.interval/actions", {
    updateGlobalConfig: { value: "86400" },
  });
}

/** Creates the zone, clusters and instance offering through the API, as an operator would. */
async function createInfrastructure(url, session) {
  await switchOffPings(url, session);
  const zone = await create(url, session, "/zones", { name: "read-scale" });
  const clusters = [];

  for (let index = 0; index < counts.clusters; index++) {
    clusters.push(
      await create(url, session, "/clusters", {
        zoneUuid: zone.uuid,
        name: `read-scale-${index}`,
        hypervisorType: "Simulator",
      }),
    );
  }

  const offering = await create(url, session, "/instance-offerings", {
    name: "read-scale",
    cpuNum: 2,
    memorySize: 2 * 1024 ** 3,
  });
  return { zone, clusters, offering };
}

/** Writes a wrk Lua script that requests a random path of `paths` each time. */
function randomPathScript(name, paths) {
  const file = join(dataDir, `${name}.lua`);
  const list = paths.map((path) => `  ${JSON.stringify(path)},`).join("\n");
  writeFileSync(
    file,
    `local paths = {\n${list}\n}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  math.randomseed(os.time() * 100 + id)
end
function request()
  return wrk.format(nil, paths[math.random(#paths)])
end
`,
  );
  return file;
}

function sample(items) {
  return Array.from(
    { length: Math.min(SAMPLE_SIZE, items.length) },
    () => items[Math.floor(Math.random() * items.length)],
  );
}

/** Fetches one path and checks the reply, so a broken query cannot pass as a fast one. */
async function check(url, session, path, verify) {
  const response = await fetch(`${url}${path}`, {
    headers: { authorization: `OAuth ${session}` },
  });
  const body = await response.json();

  if (response.status !== 200 || !verify(body)) {
    throw new Error(
      `unexpected reply to GET ${path}: HTTP ${response.status} ${JSON.stringify(body).slice(0, 300)}`,
    );
  }
}

let tstack;
let ceiling;

try {
  tstack = await startServerProcess(serverArgs, env);
  const infrastructure = await createInfrastructure(tstack.url, await logIn(tstack.url, PASSWORD));
  await stopServerProcess(tstack);

  const seedStart = performance.now();
  const seeded = await seedReadScale(database, { ...counts, ...infrastructure });
  const seedSeconds = (performance.now() - seedStart) / 1000;

  const startedAt = performance.now();
  tstack = await startServerProcess(serverArgs, env);
  const startSeconds = (performance.now() - startedAt) / 1000;
  const session = await logIn(tstack.url, PASSWORD);
  ceiling = await startServerProcess((port) => ["bench/ceiling-server.mjs", String(port)]);

  const base = "/zstack/v1/vm-instances";
  const pageQuery = (field, uuid) =>
    `${base}?q=state=Running&q=${field}=${uuid}&sort=-createDate&limit=100`;
  const workloads = {
    getByUuid: sample(seeded.vmUuids).map((uuid) => `${base}/${uuid}`),
    pageByHost: sample(seeded.hostUuids).map((uuid) => pageQuery("hostUuid", uuid)),
    pageByCluster: sample(seeded.clusterUuids).map((uuid) => pageQuery("clusterUuid", uuid)),
    count: [`${base}?count=true`],
  };

  await check(tstack.url, session, workloads.getByUuid[0], (body) => body.inventories.length === 1);
  await check(
    tstack.url,
    session,
    workloads.pageByCluster[0],
    (body) => body.inventories.length > 0 && body.inventories.length <= 100,
  );
  await check(tstack.url, session, workloads.pageByHost[0], (body) => body.inventories.length > 0);
  await check(tstack.url, session, workloads.count[0], (body) => body.total === counts.vms);

  const headers = { authorization: `OAuth ${session}` };
  const results = {
    ceiling: wrk(ceiling, `${ceiling.url}/zstack/v1/zones/${"0".repeat(32)}`, load),
  };

  for (const [name, paths] of Object.entries(workloads)) {
    const script = randomPathScript(name, paths);
    results[name] = wrk(tstack, `${tstack.url}${paths[0]}`, { ...load, headers, script });
  }

  const peakRss = rssMiB(tstack.child.pid, "VmHWM");
  const labels = {
    ceiling: "plain Fastify constant (ceiling)",
    getByUuid: "GET /vm-instances/{uuid}, random VM",
    pageByHost: "page of ≤ 100: Running VMs of a random host, newest first",
    pageByCluster: "page of 100: Running VMs of a random cluster, newest first",
    count: "count of all VMs (count=true)",
  };

  console.log(
    `\nread-scale: ${counts.hosts} hosts, ${counts.vms} VMs, ${counts.clusters} clusters, ${load.clients} clients, ${load.seconds} s each, ${values.database ? "PostgreSQL" : "SQLite"}`,
  );
  console.log(
    `seeded in ${seedSeconds.toFixed(1)} s; server restart on the seeded database: ${startSeconds.toFixed(1)} s; server peak RSS ${peakRss.toFixed(0)} MiB\n`,
  );
  console.log(TABLE_HEADER);

  for (const [name, result] of Object.entries(results)) {
    console.log(tableRow(labels[name], result));
  }

  const metrics = [{ metric: "server.peakRss", value: Math.round(peakRss), unit: "MiB" }];

  for (const [name, result] of Object.entries(results)) {
    metrics.push(
      { metric: `${name}.p50`, value: result.p50, unit: "ms" },
      { metric: `${name}.p99`, value: result.p99, unit: "ms" },
      { metric: `${name}.rate`, value: Math.round(result.perSecond), unit: "req/s" },
      { metric: `${name}.errors`, value: result.errors, unit: "requests" },
    );
  }

  console.log(`\n${JSON.stringify(metrics)}`);
} finally {
  if (ceiling) {
    await stopServerProcess(ceiling);
  }

  if (tstack) {
    await stopServerProcess(tstack);
  }

  rmSync(dataDir, { recursive: true, force: true });
}
