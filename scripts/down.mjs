#!/usr/bin/env node
// Stops what `npm run up` started: tstack-server, the local agent and, with --purge, everything
// tstack made on this machine (VMs, bridges, namespaces, nftables tables, data directories).
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const dataDir = process.env.TSTACK_DATA_DIR ?? "/var/lib/tstack";
const agentDir = "/var/lib/tstack-agent";
const purge = process.argv.includes("--purge");

async function stop(pidFile, name) {
  if (!existsSync(pidFile)) {
    return;
  }

  const pid = Number(readFileSync(pidFile, "utf8").trim());

  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("tstack")) {
      return;
    }

    process.kill(pid, "SIGTERM");
    console.log(`stopping ${name} (pid ${pid})`);
  } catch {
    return;
  }

  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      process.kill(pid, 0);
      await sleep(100);
    } catch {
      return;
    }
  }

  process.kill(pid, "SIGKILL");
}

/**
 * Ends what the local agent started and left behind: QEMU processes, dnsmasq and metadata
 * servers all name a path under the agent's data directory on their command line.
 */
function killVms() {
  for (const entry of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");

      if (Number(entry) !== process.pid && cmdline.includes(agentDir)) {
        process.kill(Number(entry), "SIGKILL");
        console.log(`killed ${cmdline.split("\0")[0]} (pid ${entry})`);
      }
    } catch {
      // Gone already.
    }
  }
}

function quiet(command, args) {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return "";
  }
}

/**
 * Removes the namespaces, links and nftables tables of this cloud only: their names derive from
 * the uuids of its L2 networks, L3 networks and VM NICs, so other tstack instances on the same
 * machine (test runs, say) keep theirs.
 */
function removeNetworking(owned) {
  const short = (uuid) => uuid.slice(0, 12);
  const l3Dir = join(agentDir, "network", "l3");
  const l3s = new Set([...owned.l3s, ...(existsSync(l3Dir) ? readdirSync(l3Dir) : [])]);

  for (const l3 of l3s) {
    quiet("ip", ["netns", "delete", `tstack-dhcp-${short(l3)}`]);
    quiet("ip", ["link", "delete", `dh_${short(l3)}`]);
    quiet("nft", ["delete", "table", "bridge", `tstack_dhcp_${short(l3)}`]);
  }

  for (const l2 of owned.l2s) {
    quiet("ip", ["link", "delete", `br_${short(l2)}`]);
  }

  for (const nic of owned.nics) {
    quiet("ip", ["link", "delete", `tap${short(nic)}`]);
  }

  // The NAT table is shared by every L3 with outbound NAT on this machine; drop it only when no
  // other tstack DHCP namespace remains.
  if (!quiet("ip", ["netns", "list"]).includes("tstack-dhcp-")) {
    quiet("nft", ["delete", "table", "inet", "tstack_nat"]);
  }

  console.log(`removed the networking of ${l3s.size} L3 and ${owned.l2s.length} L2 network(s)`);
}

/** Stops running VMs through the API, so the next `up` starts them cleanly; expunges them with --purge. */
const owned = { l2s: [], l3s: [], nics: [] };

async function stopVms() {
  const root = new URL("..", import.meta.url).pathname;
  const passwordFile = join(dataDir, "admin-password");
  const password =
    process.env.TSTACK_ADMIN_PASSWORD ??
    (existsSync(passwordFile) ? readFileSync(passwordFile, "utf8").trim() : undefined);
  const port = Number((process.env.TSTACK_LISTEN ?? "0.0.0.0:8080").split(":").pop());

  if (!password || !existsSync(join(root, "packages/sdk/dist/index.js"))) {
    return;
  }

  try {
    const { TstackClient } = await import(join(root, "packages/sdk/dist/index.js"));
    const client = new TstackClient({ endpoint: `http://127.0.0.1:${port}`, retries: 0 });
    await client.logInByAccount("admin", password);

    owned.l2s = (await client.query("queryL2Network")).inventories.map((l2) => l2.uuid);
    owned.l3s = (await client.query("queryL3Network")).inventories.map((l3) => l3.uuid);
    owned.nics = (await client.query("queryVmNic")).inventories.map((nic) => nic.uuid);

    // In parallel: a graceful stop waits up to vm.stop.gracefulTimeout for each guest.
    const vms = (await client.query("queryVmInstance", ["state?=Running,Paused"])).inventories;
    await Promise.all(
      vms.map(async (vm) => {
        console.log(`stopping VM ${vm.name} (${vm.uuid})`);
        await client.call("stopVmInstance", {
          path: { uuid: vm.uuid },
          params: { type: purge ? "cold" : "grace" },
        });
      }),
    );
  } catch (error) {
    console.log(
      `could not stop VMs through the API (${error.message}); ${purge ? "purging anyway" : "they keep running"}`,
    );
  }
}

await stopVms();
await stop(join(dataDir, "server.pid"), "tstack-server");
await stop(join(agentDir, "agent.pid"), "tstack-agent");

if (purge) {
  killVms();
  removeNetworking(owned);
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(agentDir, { recursive: true, force: true });
  console.log(`removed ${dataDir} and ${agentDir}`);
} else {
  console.log(`stopped; data kept in ${dataDir}. Run 'npm run up' to start again.`);
}
