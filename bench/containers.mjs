// Container benchmark: createVmInstance (InstantStart) of a busybox container through the REST
// API until its job reports Running, one at a time, then 50 with 10 concurrent clients. One
// all-in-one cloud on this machine, in temporary directories.
// With --nic each container gets one NIC (a veth on an isolated flat L2 with no services).
// Usage: npm run bench -- containers [--serial 20] [--total 50] [--clients 10] [--nic]
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    serial: { type: "string", default: "20" },
    total: { type: "string", default: "50" },
    clients: { type: "string", default: "10" },
    nic: { type: "boolean", default: false },
  },
});
const serialRuns = Number(values.serial);
const total = Number(values.total);
const clients = Number(values.clients);
const root = new URL("..", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "tct-bench-"));
const agentDir = join(work, "agent");
// runc ids, network namespaces and cgroups of the benchmark's containers start with this.
const PREFIX = "tctb";
const children = [];
const bridges = [];

async function freePort() {
  const server = createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function percentile(values, fraction) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))];
}

async function startServer() {
  const port = await freePort();
  const server = spawn(
    process.execPath,
    [
      join(root, "packages/server/dist/main.js"),
      ...["--listen", `127.0.0.1:${port}`, "--data-dir", join(work, "server")],
      ...["--log-level", "warn"],
    ],
    {
      env: {
        ...process.env,
        TSTACK_ADMIN_PASSWORD: "password",
        TSTACK_AGENT_CONTAINER_PREFIX: PREFIX,
      },
      stdio: "inherit",
    },
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

/** Builds the cloud: a Container cluster with this machine as host, storage and a tar image. */
async function buildCloud(client, tarPath) {
  const call = (name, options) => client.call(name, options);
  await call("updateGlobalConfig", {
    path: { category: "host", name: "agent.dataDir" },
    params: { value: agentDir },
  });
  await call("updateGlobalConfig", {
    path: { category: "host", name: "agent.port" },
    params: { value: String(await freePort()) },
  });
  // 50 one-vCPU containers on 2 cores: containers share CPUs the way processes do.
  await call("updateGlobalConfig", {
    path: { category: "host", name: "cpu.overProvisioning.ratio" },
    params: { value: "100" },
  });
  await call("updateGlobalConfig", {
    path: { category: "image", name: "allowedFileUrlPrefixes" },
    params: { value: work },
  });
  const zone = (await call("createZone", { params: { name: "bench" } })).inventory;
  const cluster = (
    await call("createCluster", {
      params: { name: "bench", zoneUuid: zone.uuid, hypervisorType: "Container" },
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
    JSON.stringify({ allowedFilePrefixes: [work], allowLoopback: true }),
  );
  const bs = (
    await call("addImageStoreBackupStorage", {
      params: { name: "bench", url: join(work, "store"), hostname: "127.0.0.1" },
    })
  ).inventory;
  await call("attachBackupStorageToZone", {
    path: { zoneUuid: zone.uuid, backupStorageUuid: bs.uuid },
  });
  const image = (
    await call("addImage", {
      params: {
        name: "busybox",
        url: `file://${tarPath}`,
        format: "tar",
        backupStorageUuids: [bs.uuid],
      },
    })
  ).inventory;
  const ps = (
    await call("addLocalPrimaryStorage", {
      params: { name: "bench", url: join(work, "primary"), zoneUuid: zone.uuid },
    })
  ).inventory;
  await call("attachPrimaryStorageToCluster", {
    path: { clusterUuid: cluster.uuid, primaryStorageUuid: ps.uuid },
  });
  return {
    imageUuid: image.uuid,
    l3NetworkUuids: values.nic ? [await buildL3(call, zone, cluster)] : [],
  };
}

/** Makes an isolated flat L2 (its own bridge, no uplink) and an L3 without network services. */
async function buildL3(call, zone, cluster) {
  const l2 = (
    await call("createL2NoVlanNetwork", { params: { name: "bench", zoneUuid: zone.uuid } })
  ).inventory;
  await call("attachL2NetworkToCluster", {
    path: { l2NetworkUuid: l2.uuid, clusterUuid: cluster.uuid },
  });
  const l3 = (
    await call("createL3Network", {
      params: { name: "bench", l2NetworkUuid: l2.uuid, category: "Private" },
    })
  ).inventory;
  await call("addIpRangeByNetworkCidr", {
    path: { l3NetworkUuid: l3.uuid },
    params: { name: "bench", networkCidr: "172.30.94.0/24" },
  });
  bridges.push(`br_${l2.uuid.slice(0, 12)}`);
  return l3.uuid;
}

/** Creates and starts one container; returns the milliseconds until its job finished. */
async function createOne(client, cloud, name) {
  const started = performance.now();
  const reply = await client.call("createVmInstance", {
    params: {
      name,
      imageUuid: cloud.imageUuid,
      l3NetworkUuids: cloud.l3NetworkUuids,
      cpuNum: 1,
      memorySize: 128 * 1024 * 1024,
    },
  });

  if (reply.inventory.state !== "Running") {
    throw new Error(`container ${reply.inventory.uuid} ended in ${reply.inventory.state}`);
  }

  return performance.now() - started;
}

async function expungeAll(client) {
  const { inventories } = await client.query("queryVmInstance");

  for (const vm of inventories) {
    await client.call("destroyVmInstance", { path: { uuid: vm.uuid } });
    await client.call("expungeVmInstance", { path: { uuid: vm.uuid }, params: {} });
  }
}

async function main() {
  execFileSync("bash", ["scripts/install-host-packages.sh"], { cwd: root, stdio: "inherit" });
  const { buildBusyboxTarball } = await import(
    join(root, "packages/agent/dist/container/testbed.js")
  );
  const tarPath = await buildBusyboxTarball(work);
  const endpoint = await startServer();
  const { TstackClient } = await import(join(root, "packages/sdk/dist/index.js"));
  const login = async () => {
    const client = new TstackClient({ endpoint, pollIntervalMs: 5 });
    await client.logInByAccount("admin", "password");
    return client;
  };
  const admin = await login();
  const cloud = await buildCloud(admin, tarPath);

  // The first container unpacks the image into the host's cache; it is not counted.
  await createOne(admin, cloud, "warm-up");
  await expungeAll(admin);

  const serial = [];

  for (let run = 0; run < serialRuns; run++) {
    serial.push(await createOne(admin, cloud, `serial-${run}`));
  }

  await expungeAll(admin);

  const sessions = await Promise.all(Array.from({ length: clients }, login));
  const concurrent = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    sessions.map(async (client) => {
      while (next < total) {
        const index = next++;
        concurrent.push(await createOne(client, cloud, `burst-${index}`));
      }
    }),
  );
  const wall = performance.now() - started;
  await expungeAll(admin);

  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const nic = values.nic ? "one NIC on a flat L3" : "no NIC";
  console.log(`\nContainer create+start through the REST API (busybox rootfs, ${nic})\n`);
  console.log("| measure | value | LXD figure |\n| --- | --- | --- |");
  console.log(
    `| one at a time, p50 of ${serialRuns} (p90) | ${percentile(serial, 0.5).toFixed(0)} ms (${percentile(serial, 0.9).toFixed(0)} ms) | 174 ms |`,
  );
  console.log(
    `| ${total} at concurrency ${clients}, wall time | ${(wall / 1000).toFixed(2)} s | 5.2 s |`,
  );
  console.log(
    `| ${total} at concurrency ${clients}, p50 (p90) per create | ${percentile(concurrent, 0.5).toFixed(0)} ms (${percentile(concurrent, 0.9).toFixed(0)} ms) | none |`,
  );
  console.log(`\nload average after the run: ${load}`);
}

/** Removes containers a failed run left: runc state, overlay mounts and network namespaces. */
function removeLeftovers() {
  const dir = join(agentDir, "containers");

  for (const uuid of existsSync(dir) ? readdirSync(dir) : []) {
    for (const [command, args] of [
      ["runc", ["--root", join(agentDir, "runc"), "delete", "--force", `${PREFIX}${uuid}`]],
      ["umount", [join(dir, uuid, "rootfs")]],
      ["ip", ["netns", "delete", `${PREFIX}${uuid}`]],
    ]) {
      try {
        execFileSync(command, args, { stdio: "ignore" });
      } catch {
        // Already gone.
      }
    }
  }
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

  removeLeftovers();

  for (const bridge of bridges) {
    try {
      execFileSync("ip", ["link", "delete", bridge], { stdio: "ignore" });
    } catch {
      // Already gone.
    }
  }

  rmSync(work, { recursive: true, force: true });
}
