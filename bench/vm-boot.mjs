// VM boot benchmark: time from the createVmInstance call to the guest's console marker, against
// the same QEMU command line started by hand, and from the call to the QEMU process existing. One all-in-one cloud on this machine, in temporary directories.
// Usage: npm run bench -- vm-boot [--runs 10]
import { execFileSync, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import {
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const runs = Number(values.runs);
const root = new URL("..", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "tstack-bench-vm-"));
const agentDir = join(work, "agent");
const children = [];

async function freePort() {
  const server = createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function qemuPid(vmUuid) {
  for (const entry of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");

      if (cmdline.startsWith("qemu-system") && cmdline.includes(vmUuid)) {
        return { pid: Number(entry), args: cmdline.split("\0").filter(Boolean) };
      }
    } catch {
      // Gone.
    }
  }

  return undefined;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Starts QEMU with tstack's own command line, minus QMP, pid file and VNC, on a copy of the disk. */
async function bootByHand(args, disk) {
  const copy = join(work, `hand-${Date.now()}.qcow2`);
  copyFileSync(disk, copy);
  const console = join(work, `hand-${Date.now()}.log`);
  writeFileSync(console, "");
  const keep = [];

  for (let index = 1; index < args.length; index++) {
    const arg = args[index];
    const value = args[index + 1] ?? "";

    if (["-qmp", "-pidfile", "-vnc", "-serial", "-netdev"].includes(arg)) {
      index++;
      continue;
    }

    if (arg === "-device" && value.startsWith("virtio-net")) {
      index++;
      continue;
    }

    if (arg === "-S") {
      continue;
    }

    keep.push(arg);
  }

  const drive = keep.findIndex((arg) => arg.startsWith("file=") && arg.includes(".qcow2"));
  keep[drive] = keep[drive].replace(/file=[^,]+/, `file=${copy}`);
  const started = performance.now();
  const child = spawn("qemu-system-x86_64", [...keep, "-serial", `file:${console}`], {
    stdio: "ignore",
  });

  while (!readFileSync(console, "utf8").includes("TSTACK-GUEST: boot-ok")) {
    await sleep(20);
  }

  const elapsed = performance.now() - started;
  child.kill("SIGKILL");
  return elapsed;
}

async function main() {
  execFileSync("bash", ["scripts/install-host-packages.sh"], { cwd: root, stdio: "inherit" });
  const image = execFileSync("bash", ["scripts/build-guest-image.sh"], {
    cwd: root,
    encoding: "utf8",
  })
    .trim()
    .split("\n")
    .pop();
  const port = await freePort();
  const server = spawn(
    process.execPath,
    [
      join(root, "packages/server/dist/main.js"),
      "--listen",
      `127.0.0.1:${port}`,
      "--data-dir",
      join(work, "server"),
      "--log-level",
      "warn",
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

  const { TstackClient } = await import(join(root, "packages/sdk/dist/index.js"));
  const client = new TstackClient({ endpoint, pollIntervalMs: 10 });
  await client.logInByAccount("admin", "password");
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
    params: { value: image.slice(0, image.lastIndexOf("/")) },
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
    JSON.stringify({
      allowedFilePrefixes: [image.slice(0, image.lastIndexOf("/"))],
      allowLoopback: true,
    }),
  );
  const bs = (
    await call("addImageStoreBackupStorage", {
      params: { name: "bench", url: join(work, "store"), hostname: "127.0.0.1" },
    })
  ).inventory;
  await call("attachBackupStorageToZone", {
    path: { zoneUuid: zone.uuid, backupStorageUuid: bs.uuid },
  });
  const img = (
    await call("addImage", {
      params: {
        name: "guest",
        url: `file://${image}`,
        format: "qcow2",
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

  const api = [];
  const spawned = [];
  const hand = [];

  for (let run = 0; run < runs; run++) {
    const vmUuid = randomUUID().replaceAll("-", "");
    const started = performance.now();
    const accepted = await call("createVmInstance", {
      params: {
        name: `bench-${run}`,
        imageUuid: img.uuid,
        cpuNum: 1,
        memorySize: 128 * 1024 * 1024,
        resourceUuid: vmUuid,
      },
      noWait: true,
    });
    let qemu = qemuPid(vmUuid);

    while (!qemu) {
      await sleep(2);
      qemu = qemuPid(vmUuid);
    }

    spawned.push(performance.now() - started);
    await client.waitForJob(accepted.location);

    while (
      !(await call("getVmConsoleLog", { path: { uuid: vmUuid } })).console.includes(
        "TSTACK-GUEST: boot-ok",
      )
    ) {
      await sleep(20);
    }

    api.push(performance.now() - started);
    const disk = qemu.args
      .find((arg) => arg.startsWith("file=") && arg.includes(".qcow2"))
      .slice(5)
      .split(",")[0];
    await call("destroyVmInstance", { path: { uuid: vmUuid } });
    hand.push(await bootByHand(qemu.args, disk));
    await call("expungeVmInstance", { path: { uuid: vmUuid }, params: {} });
  }

  console.log(`\nVM boot, ${runs} runs, TCG, 1 vCPU, 128 MiB, busybox guest\n`);
  console.log("| measure | median ms | runs (ms) |\n| --- | --- | --- |");
  console.log(
    `| createVmInstance call → boot-ok on the console | ${median(api).toFixed(0)} | ${api.map((v) => v.toFixed(0)).join(" / ")} |`,
  );
  console.log(
    `| same QEMU command line by hand → boot-ok | ${median(hand).toFixed(0)} | ${hand.map((v) => v.toFixed(0)).join(" / ")} |`,
  );
  console.log(
    `| createVmInstance call → QEMU process exists | ${median(spawned).toFixed(1)} | ${spawned.map((v) => v.toFixed(1)).join(" / ")} |`,
  );
  console.log(`\nratio of medians: ${(median(api) / median(hand)).toFixed(2)}`);
}

try {
  await main();
} finally {
  for (const child of children) {
    child.kill("SIGTERM");
  }

  await sleep(1000);
  const agentPid = (() => {
    try {
      return Number(readFileSync(join(agentDir, "agent.pid"), "utf8"));
    } catch {
      return undefined;
    }
  })();

  if (agentPid) {
    try {
      process.kill(agentPid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }

  rmSync(work, { recursive: true, force: true });
}
