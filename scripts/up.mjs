#!/usr/bin/env node
// All-in-one bring-up: installs what is missing, starts tstack-server and, through it, a local
// agent, then makes sure a small cloud exists on this machine and one VM runs in it. Every step
// first looks for what a previous run made, so running it again only checks.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const root = new URL("..", import.meta.url).pathname;
const dataDir = process.env.TSTACK_DATA_DIR ?? "/var/lib/tstack";
const agentDir = "/var/lib/tstack-agent";
const listen = process.env.TSTACK_LISTEN ?? "0.0.0.0:8080";
const port = Number(listen.split(":").pop());
const endpoint = `http://127.0.0.1:${port}`;
const started = Date.now();

function step(text) {
  console.log(`\n==> ${text}`);
}

function sh(command, args, options = {}) {
  execFileSync(command, args, { cwd: root, stdio: "inherit", ...options });
}

function install() {
  if (!existsSync(join(root, "node_modules", ".package-lock.json"))) {
    step("installing npm dependencies");
    sh("npm", ["ci", "--no-audit", "--no-fund"]);
  }

  step("building");
  sh("npm", ["run", "build", "--silent"]);

  step("checking Debian packages");
  sh("bash", ["scripts/install-host-packages.sh"]);

  step("building the sample guest image (cached after the first run)");
  return execFileSync("bash", ["scripts/build-guest-image.sh"], { cwd: root, encoding: "utf8" })
    .trim()
    .split("\n")
    .pop();
}

function running(pidFile, marker) {
  if (!existsSync(pidFile)) {
    return undefined;
  }

  const pid = Number(readFileSync(pidFile, "utf8").trim());

  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function startServer() {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const pidFile = join(dataDir, "server.pid");

  if (running(pidFile, "tstack")) {
    console.log(`tstack-server is already running (pid ${readFileSync(pidFile, "utf8").trim()})`);
  } else {
    step("starting tstack-server");
    const log = openSync(join(dataDir, "server.log"), "a");
    const child = spawn(
      process.execPath,
      [join(root, "packages/server/dist/main.js"), "--listen", listen, "--data-dir", dataDir],
      { detached: true, stdio: ["ignore", log, log] },
    );
    child.unref();
    writeFileSync(pidFile, `${child.pid}\n`);
  }

  for (let attempt = 0; attempt < 300; attempt++) {
    const ready = await fetch(`${endpoint}/zstack/v1/management-nodes/ready`).then(
      (response) => response.ok,
      () => false,
    );

    if (ready) {
      return;
    }

    await sleep(100);
  }

  throw new Error(`tstack-server did not become ready in 30 s; see ${join(dataDir, "server.log")}`);
}

function adminPassword() {
  if (process.env.TSTACK_ADMIN_PASSWORD) {
    return process.env.TSTACK_ADMIN_PASSWORD;
  }

  const file = join(dataDir, "admin-password");

  if (!existsSync(file)) {
    throw new Error(
      `no ${file}: the admin password was set with TSTACK_ADMIN_PASSWORD at first start; export it again`,
    );
  }

  return readFileSync(file, "utf8").trim();
}

/** Returns the first resource matching `conditions`, creating it with `create` when none does. */
async function ensure(client, query, conditions, create, label) {
  const found = (await client.query(query, conditions)).inventories[0];

  if (found) {
    console.log(`   ${label}: exists (${found.uuid})`);
    return found;
  }

  const created = (await create()).inventory;
  console.log(`   ${label}: created (${created.uuid})`);
  return created;
}

/** Picks a private /24 that no route on this machine covers, reading the routing table only. */
function freeSubnet() {
  const routes = execFileSync("ip", ["-4", "route", "show", "table", "all"], { encoding: "utf8" });

  for (let third = 200; third < 250; third++) {
    const prefix = `10.251.${third}.`;

    if (!routes.includes(prefix)) {
      return `${prefix}0/24`;
    }
  }

  throw new Error("no free 10.251.x.0/24 subnet; set TSTACK_UP_CIDR");
}

async function buildCloud(client, imagePath) {
  step("making sure the all-in-one cloud exists");
  const call = (name, options) => client.call(name, options);
  const zone = await ensure(
    client,
    "queryZone",
    ["name=zone-1"],
    () => call("createZone", { params: { name: "zone-1" } }),
    "zone",
  );
  const cluster = await ensure(
    client,
    "queryCluster",
    ["name=cluster-1"],
    () =>
      call("createCluster", {
        params: { name: "cluster-1", zoneUuid: zone.uuid, hypervisorType: "KVM" },
      }),
    "cluster",
  );
  const host = await ensure(
    client,
    "queryHost",
    ["managementIp=127.0.0.1"],
    () =>
      call("addKVMHost", {
        params: {
          name: "this-machine",
          managementIp: "127.0.0.1",
          username: "root",
          clusterUuid: cluster.uuid,
        },
      }),
    "KVM host",
  );

  // After `npm run down` the agent is stopped while the database still says Connected.
  if (host.status !== "Connected" || !running(join(agentDir, "agent.pid"), "tstack")) {
    console.log("   KVM host: reconnecting its agent");
    await call("reconnectHost", { path: { uuid: host.uuid }, params: {} });
  }

  // The sample image is added from the local cache, so both sides must allow that directory.
  // The agent also fills its image cache from the image store on 127.0.0.1, so it allows
  // loopback; user image URLs stay limited by the server's image.allowLoopbackUrls (false).
  const imageDir = imagePath.slice(0, imagePath.lastIndexOf("/"));
  writeFileSync(
    join(agentDir, "storage-policy.json"),
    JSON.stringify({ allowedFilePrefixes: [imageDir], allowLoopback: true }),
  );
  await call("updateGlobalConfig", {
    path: { category: "image", name: "allowedFileUrlPrefixes" },
    params: { value: imageDir },
  });

  const ps = await ensure(
    client,
    "queryPrimaryStorage",
    ["name=local-1"],
    () =>
      call("addLocalPrimaryStorage", {
        params: { name: "local-1", url: join(dataDir, "primary"), zoneUuid: zone.uuid },
      }),
    "local primary storage",
  );
  await call("attachPrimaryStorageToCluster", {
    path: { clusterUuid: cluster.uuid, primaryStorageUuid: ps.uuid },
  }).catch(() => {});
  const bs = await ensure(
    client,
    "queryBackupStorage",
    ["name=store-1"],
    () =>
      call("addImageStoreBackupStorage", {
        params: { name: "store-1", url: join(dataDir, "images"), hostname: "127.0.0.1" },
      }),
    "image store",
  );
  await call("attachBackupStorageToZone", {
    path: { zoneUuid: zone.uuid, backupStorageUuid: bs.uuid },
  }).catch(() => {});
  const image = await ensure(
    client,
    "queryImage",
    ["name=tstack-guest", "status=Ready"],
    () =>
      call("addImage", {
        params: {
          name: "tstack-guest",
          url: `file://${imagePath}`,
          format: "qcow2",
          mediaType: "RootVolumeTemplate",
          backupStorageUuids: [bs.uuid],
        },
      }),
    "sample image",
  );

  const l2 = await ensure(
    client,
    "queryL2Network",
    ["name=flat-1"],
    () => call("createL2NoVlanNetwork", { params: { name: "flat-1", zoneUuid: zone.uuid } }),
    "flat L2 network",
  );
  await call("attachL2NetworkToCluster", {
    path: { l2NetworkUuid: l2.uuid, clusterUuid: cluster.uuid },
  }).catch(() => {});
  const l3 = await ensure(
    client,
    "queryL3Network",
    ["name=private-1"],
    async () => {
      const created = await call("createL3Network", {
        params: { name: "private-1", l2NetworkUuid: l2.uuid, category: "Private" },
      });
      const cidr = process.env.TSTACK_UP_CIDR ?? freeSubnet();
      await call("addIpRangeByNetworkCidr", {
        path: { l3NetworkUuid: created.inventory.uuid },
        params: { name: "range-1", networkCidr: cidr },
      });
      await call("attachNetworkServiceToL3Network", {
        path: { l3NetworkUuid: created.inventory.uuid },
        params: {
          networkServices: {
            f1b7a78b680fb97d45b686eac3a16d98: ["DHCP", "DNS", "Userdata", "SNAT"],
          },
        },
      });
      return created;
    },
    "L3 network with DHCP and outbound NAT",
  );
  const offering = await ensure(
    client,
    "queryInstanceOffering",
    ["name=small"],
    () =>
      call("createInstanceOffering", {
        params: { name: "small", cpuNum: 1, memorySize: 128 * 1024 * 1024 },
      }),
    "instance offering",
  );

  return { image, l3, offering };
}

async function bootVm(client, cloud) {
  step("making sure the demo VM runs");
  const vm = await ensure(
    client,
    "queryVmInstance",
    ["name=demo-vm", "state!=Destroyed"],
    () =>
      client.call("createVmInstance", {
        params: {
          name: "demo-vm",
          imageUuid: cloud.image.uuid,
          instanceOfferingUuid: cloud.offering.uuid,
          l3NetworkUuids: [cloud.l3.uuid],
        },
        systemTags: ["hostname::demo-vm"],
      }),
    "VM demo-vm",
  );

  if (vm.state !== "Running") {
    await client.call("startVmInstance", { path: { uuid: vm.uuid }, params: {} });
  }

  const nic = (await client.query("queryVmNic", [`vmInstanceUuid=${vm.uuid}`])).inventories[0];
  const deadline = Date.now() + 120_000;

  while (Date.now() < deadline) {
    const { console: text } = await client.call("getVmConsoleLog", { path: { uuid: vm.uuid } });

    if (text.includes(`TSTACK-GUEST: ip=${nic.ip}`)) {
      return { vm, ip: nic.ip };
    }

    await sleep(1000);
  }

  throw new Error(
    `VM ${vm.uuid} did not report its DHCP address ${nic.ip} within 120 s; see 'tstack vm console demo-vm'`,
  );
}

process.on("uncaughtException", (error) => {
  const body = error.body ?? {};
  console.error(
    `\nnpm run up failed: ${body.code ? `${body.code}: ${body.details}` : error.message}`,
  );

  if (body.elaboration) {
    console.error(`what to do: ${body.elaboration}`);
  }

  console.error(
    `server log: ${join(dataDir, "server.log")}; agent log: ${join(agentDir, "agent.log")}`,
  );
  process.exit(1);
});

const imagePath = install();
await startServer();
const { TstackClient } = await import(join(root, "packages/sdk/dist/index.js"));
const client = new TstackClient({ endpoint });
await client.logInByAccount("admin", adminPassword());
const cloud = await buildCloud(client, imagePath);
const { vm, ip } = await bootVm(client, cloud);
const ping = (() => {
  try {
    execFileSync("ping", ["-c", "1", "-W", "3", ip], { stdio: "ignore" });
    return "answers ping from this machine";
  } catch {
    return "does not answer ping yet";
  }
})();

console.log(`
tstack is up in ${((Date.now() - started) / 1000).toFixed(1)} s.

  API:            http://<this machine>:${port}/zstack/v1   (OpenAPI: /zstack/v1/openapi.json)
  admin password: ${process.env.TSTACK_ADMIN_PASSWORD ? "the TSTACK_ADMIN_PASSWORD you set" : join(dataDir, "admin-password")}
  demo VM:        demo-vm (${vm.uuid}) at ${ip}, ${ping}

Try the CLI:
  node packages/cli/dist/main.js login --endpoint ${endpoint} --account admin
  node packages/cli/dist/main.js vm list
  node packages/cli/dist/main.js vm console demo-vm

Stop with 'npm run down' (keeps the data); 'npm run down -- --purge' also removes VMs, bridges,
namespaces, nftables tables and the data directories.
`);
