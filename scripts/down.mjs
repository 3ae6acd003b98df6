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

/** Removes the namespaces, links and nftables tables tstack names with its own prefixes. */
function removeNetworking() {
  for (const line of quiet("ip", ["netns", "list"]).split("\n")) {
    const name = line.split(" ")[0];

    if (name?.startsWith("tstack-")) {
      quiet("ip", ["netns", "delete", name]);
      console.log(`removed namespace ${name}`);
    }
  }

  for (const line of quiet("ip", ["-o", "link", "show"]).split("\n")) {
    const name = /^\d+: ([^:@]+)/.exec(line)?.[1];

    if (name && /^(br_[0-9a-f]{12}|tap[0-9a-f]{12}|dh_[0-9a-f]{12}|vx\d+)$/.test(name)) {
      quiet("ip", ["link", "delete", name]);
      console.log(`removed link ${name}`);
    }
  }

  for (const line of quiet("nft", ["list", "tables"]).split("\n")) {
    const [, family, name] = line.trim().split(/\s+/);

    if (name?.startsWith("tstack_")) {
      quiet("nft", ["delete", "table", family, name]);
      console.log(`removed nftables table ${family} ${name}`);
    }
  }
}

/** Stops running VMs through the API, so the next `up` starts them cleanly; expunges them with --purge. */
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

    for (const vm of (await client.query("queryVmInstance", ["state?=Running,Paused"]))
      .inventories) {
      console.log(`stopping VM ${vm.name} (${vm.uuid})`);
      await client.call("stopVmInstance", {
        path: { uuid: vm.uuid },
        params: { type: purge ? "cold" : "grace" },
      });
    }
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
  removeNetworking();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(agentDir, { recursive: true, force: true });
  console.log(`removed ${dataDir} and ${agentDir}`);
} else {
  console.log(`stopped; data kept in ${dataDir}. Run 'npm run up' to start again.`);
}
