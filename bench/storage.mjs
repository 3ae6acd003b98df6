// Storage benchmark: 20 concurrent createVmInstance calls (strategy CreateStopped) from one
// freshly added image on one host, through the REST API. It counts how often the image file left
// the image store (one copy into the host's image cache is the goal) and times the creation of
// each root volume overlay. One all-in-one cloud on this machine, in temporary directories.
//
// CreateStopped runs the same steps as InstantStart up to and including the root volume (host
// allocation, image cache fill, overlay), then stops before QEMU: booting 20 TCG guests on a
// 2-core machine would measure CPU contention, not storage.
//
// Both numbers come from the agent's own request log (agent.log, Fastify's pino lines):
// - downloads: GET requests for the image's file on the image store's HTTP route,
// - overlay time: `responseTime` of each POST /storage/volume/root/create, the whole agent
//   command that makes the root volume's qcow2 overlay on the cached image.
// Then --serial VMs are created one at a time from the cached image, for the overlay time
// without 20 commands arriving at once.
// Usage: npm run bench -- storage [--vms 20] [--serial 10]
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { freePort, root } from "./lib/harness.mjs";
import { percentile } from "./lib/metric-queries.mjs";

const { values } = parseArgs({
  options: { vms: { type: "string", default: "20" }, serial: { type: "string", default: "10" } },
});
const vmCount = Number(values.vms);
const serialCount = Number(values.serial);
const work = mkdtempSync(join(tmpdir(), "tstack-bench-storage-"));
const agentDir = join(work, "agent");
const children = [];

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function startServer() {
  const port = await freePort();
  const server = spawn(
    process.execPath,
    [
      join(root, "packages/server/dist/main.js"),
      ...["--listen", `127.0.0.1:${port}`, "--data-dir", join(work, "server")],
      ...["--log-level", "warn"],
    ],
    { env: { ...process.env, TSTACK_ADMIN_PASSWORD: "password" }, stdio: "inherit" },
  );
  children.push(server);
  const endpoint = `http://127.0.0.1:${port}`;

  while (
    !(await fetch(`${endpoint}/zstack/v1/management-nodes/ready`).then(
      (response) => response.ok,
      () => false,
    ))
  ) {
    await sleep(100);
  }

  return endpoint;
}

/** Builds the cloud: a KVM cluster with this machine as host, an image store, local storage. */
async function buildCloud(client, imageDir) {
  const call = (name, options) => client.call(name, options);
  await call("updateGlobalConfig", {
    path: { category: "host", name: "agent.dataDir" },
    params: { value: agentDir },
  });
  await call("updateGlobalConfig", {
    path: { category: "host", name: "agent.port" },
    params: { value: String(await freePort()) },
  });
  await call("updateGlobalConfig", {
    path: { category: "image", name: "allowedFileUrlPrefixes" },
    params: { value: imageDir },
  });
  // Many one-vCPU VMs on a small host: the host allocator must not run out of CPUs first.
  await call("updateGlobalConfig", {
    path: { category: "host", name: "cpu.overProvisioning.ratio" },
    params: { value: "100" },
  });
  const zone = (await call("createZone", { params: { name: "bench" } })).inventory;
  const cluster = (
    await call("createCluster", {
      params: { name: "bench", zoneUuid: zone.uuid, hypervisorType: "KVM" },
    })
  ).inventory;
  await call("addKVMHost", {
    params: {
      name: "local",
      managementIp: "127.0.0.1",
      username: "root",
      clusterUuid: cluster.uuid,
    },
  });
  writeFileSync(
    join(agentDir, "storage-policy.json"),
    JSON.stringify({ allowedFilePrefixes: [imageDir], allowLoopback: true }),
  );
  const bs = (
    await call("addImageStoreBackupStorage", {
      params: { name: "bench", url: join(work, "store"), hostname: "127.0.0.1" },
    })
  ).inventory;
  await call("attachBackupStorageToZone", {
    path: { zoneUuid: zone.uuid, backupStorageUuid: bs.uuid },
  });
  const ps = (
    await call("addLocalPrimaryStorage", {
      params: { name: "bench", url: join(work, "primary"), zoneUuid: zone.uuid },
    })
  ).inventory;
  await call("attachPrimaryStorageToCluster", {
    path: { clusterUuid: cluster.uuid, primaryStorageUuid: ps.uuid },
  });
  return { backupStorageUuid: bs.uuid };
}

async function addImage(client, cloud, imagePath) {
  const reply = await client.call("addImage", {
    params: {
      name: "guest",
      url: `file://${imagePath}`,
      format: "qcow2",
      backupStorageUuids: [cloud.backupStorageUuid],
    },
  });
  return reply.inventory.uuid;
}

/** Creates one stopped VM; returns the milliseconds until its job finished. */
async function createOne(client, imageUuid, name) {
  const started = performance.now();
  const reply = await client.call("createVmInstance", {
    params: {
      name,
      imageUuid,
      strategy: "CreateStopped",
      cpuNum: 1,
      memorySize: 128 * 1024 * 1024,
    },
  });

  if (reply.inventory.state !== "Stopped") {
    throw new Error(`VM ${reply.inventory.uuid} ended in ${reply.inventory.state}`);
  }

  return performance.now() - started;
}

/**
 * Reads the agent's request log: image file GETs for `imageUuid` and the response time of every
 * root volume creation. Fastify logs "incoming request" with the URL and "request completed"
 * with `responseTime` (ms), joined by `reqId`.
 */
function readAgentLog(imageUuid) {
  const lines = readFileSync(join(agentDir, "agent.log"), "utf8")
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));
  const imageFile = new RegExp(`^/imagestore/[0-9a-f]{32}/images/${imageUuid}/`);
  const rootCreates = new Set();
  const overlayMs = [];
  let downloads = 0;
  let fills = 0;

  for (const line of lines) {
    const url = line.req?.url ?? "";

    if (line.msg === "incoming request" && line.req.method === "GET" && imageFile.test(url)) {
      downloads++;
    } else if (line.msg === "incoming request" && url === "/storage/imagecache/fill") {
      fills++;
    } else if (line.msg === "incoming request" && url === "/storage/volume/root/create") {
      rootCreates.add(line.reqId);
    } else if (line.msg === "request completed" && rootCreates.has(line.reqId)) {
      overlayMs.push(line.responseTime);
      rootCreates.delete(line.reqId);
    }
  }

  return { downloads, fills, overlayMs };
}

/**
 * Reads the agent's log until it shows `count` root volume creations. Fastify logs "request
 * completed" after the response is sent, so the last line can arrive after the create's job ended.
 */
async function waitForAgentLog(imageUuid, count) {
  const deadline = Date.now() + 30_000;
  let log = readAgentLog(imageUuid);

  while (log.overlayMs.length < count) {
    if (Date.now() > deadline) {
      throw new Error(
        `agent.log shows ${log.overlayMs.length} root volume creations, not ${count}`,
      );
    }

    await sleep(100);
    log = readAgentLog(imageUuid);
  }

  return log;
}

async function expungeAll(client) {
  const { inventories } = await client.query("queryVmInstance");

  for (const vm of inventories) {
    await client.call("destroyVmInstance", { path: { uuid: vm.uuid } });
    await client.call("expungeVmInstance", { path: { uuid: vm.uuid }, params: {} });
  }
}

function printResults(result) {
  const ms = (value) => `${value.toFixed(1)} ms`;
  console.log(
    `\n${vmCount} concurrent createVmInstance (CreateStopped) from one new image, one host\n`,
  );
  console.log("| measure | value | goal |\n| --- | --- | --- |");
  console.log(`| image file downloads from the image store | ${result.downloads} | 1 |`);
  console.log(
    `| /storage/imagecache/fill commands to the agent, all creates | ${result.fills} | none |`,
  );
  console.log(
    `| root volume overlay, agent command time p50 (p90, max) | ${ms(result.overlayP50)} (${ms(result.overlayP90)}, ${ms(result.overlayMax)}) | p50 ≤ 50 ms |`,
  );
  console.log(
    `| createVmInstance call → job done, p50 (p90) | ${ms(result.createP50)} (${ms(result.createP90)}) | none |`,
  );
  console.log(`| wall time of all ${vmCount} | ${(result.wallMs / 1000).toFixed(2)} s | none |`);
  console.log(
    `| ${result.serial} more one at a time: overlay p50 (p90) | ${ms(result.serialOverlayP50)} (${ms(result.serialOverlayP90)}) | none |`,
  );
  console.log(
    `| ${result.serial} more one at a time: createVmInstance p50 | ${ms(result.serialCreateP50)} | none |`,
  );
  console.log(`\nload average after the run: ${result.loadAverage}`);
  console.log(JSON.stringify({ benchmark: "storage", ...result }));
}

async function main() {
  execFileSync("bash", ["scripts/install-host-packages.sh"], { cwd: root, stdio: "inherit" });
  const imagePath = execFileSync("bash", ["scripts/build-guest-image.sh"], {
    cwd: root,
    encoding: "utf8",
  })
    .trim()
    .split("\n")
    .pop();
  const endpoint = await startServer();
  const { TstackClient } = await import(join(root, "packages/sdk/dist/index.js"));
  const login = async () => {
    const client = new TstackClient({ endpoint, pollIntervalMs: 5 });
    await client.logInByAccount("admin", "password");
    return client;
  };
  const admin = await login();
  const cloud = await buildCloud(admin, imagePath.slice(0, imagePath.lastIndexOf("/")));
  const sessions = await Promise.all(Array.from({ length: vmCount }, login));
  const imageUuid = await addImage(admin, cloud, imagePath);

  const started = performance.now();
  const creates = await Promise.all(
    sessions.map((client, index) => createOne(client, imageUuid, `bench-${index}`)),
  );
  const wallMs = performance.now() - started;

  const serialCreates = [];

  for (let index = 0; index < serialCount; index++) {
    serialCreates.push(await createOne(admin, imageUuid, `serial-${index}`));
  }

  const log = await waitForAgentLog(imageUuid, vmCount + serialCount);
  // The log lists the burst's creations first.
  const burstOverlays = log.overlayMs.slice(0, vmCount);
  const serialOverlays = log.overlayMs.slice(vmCount);
  await expungeAll(admin);
  printResults({
    vms: vmCount,
    strategy: "CreateStopped",
    downloads: log.downloads,
    fills: log.fills,
    overlayP50: percentile(burstOverlays, 50),
    overlayP90: percentile(burstOverlays, 90),
    overlayMax: Math.max(...burstOverlays),
    createP50: percentile(creates, 50),
    createP90: percentile(creates, 90),
    wallMs,
    serial: serialCount,
    serialOverlayP50: percentile(serialOverlays, 50),
    serialOverlayP90: percentile(serialOverlays, 90),
    serialCreateP50: percentile(serialCreates, 50),
    loadAverage: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
  });
}

try {
  await main();
} finally {
  for (const child of children) {
    child.kill("SIGTERM");
  }

  await sleep(1000);

  try {
    process.kill(Number(readFileSync(join(agentDir, "agent.pid"), "utf8")), "SIGKILL");
  } catch {
    // Not started or already gone.
  }

  rmSync(work, { recursive: true, force: true });
}
