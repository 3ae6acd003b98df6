import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

// A second "host": a network namespace with its own sshd, reached over a veth pair. It shares
// this machine's file system and process table, so apt finds everything installed already.
const suffix = Math.random().toString(36).slice(2, 7);
const NAMESPACE = `tsh-${suffix}`;
const ROOT_VETH = `tsh${suffix}a`;
const HOST_VETH = `tsh${suffix}b`;
const ROOT_ADDRESS = "172.31.254.1";
const HOST_ADDRESS = "172.31.254.2";
const AGENT_PORT = 7070;

function ip(...args: string[]) {
  execFileSync("ip", args, { stdio: "pipe" });
}

function keygen(path: string) {
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "tsh-test", "-f", path]);
}

function alive(pid: number) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(accept: () => boolean, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;

  while (!accept()) {
    if (Date.now() > deadline) {
      throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    }

    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function portOpen(host: string, port: number) {
  return new Promise<boolean>((resolve) => {
    const socket = connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

describe("KVM host added over SSH", () => {
  let dir: string;
  let agentDir: string;
  let sshd: ChildProcess | undefined;
  let t: TestServer;
  let admin: TstackClient;
  let clusterUuid: string;
  let hostUuid: string;

  /** Runs Debian's sshd inside the namespace with the given host key, on port 22 there. */
  async function startSshd(hostKey: string) {
    const config = join(dir, "sshd_config");
    writeFileSync(
      config,
      [
        "Port 22",
        `ListenAddress ${HOST_ADDRESS}`,
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
        "PermitRootLogin yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        // The key file lives under /tmp, which is world-writable.
        "StrictModes no",
        "UsePAM no",
        "Subsystem sftp internal-sftp",
        "",
      ].join("\n"),
    );
    sshd = spawn(
      "ip",
      [
        "netns",
        "exec",
        NAMESPACE,
        "/usr/sbin/sshd",
        "-D",
        "-f",
        config,
        "-E",
        join(dir, "sshd.log"),
      ],
      { stdio: "ignore" },
    );
    const started = sshd;
    await until(() => existsSync(join(dir, "sshd.pid")) || started.exitCode !== null, "sshd start");
    const deadline = Date.now() + 10_000;

    while (!(await portOpen(HOST_ADDRESS, 22))) {
      if (Date.now() > deadline || started.exitCode !== null) {
        throw new Error(`sshd did not listen: ${readFileSync(join(dir, "sshd.log"), "utf8")}`);
      }

      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function stopSshd() {
    const running = sshd;
    sshd = undefined;

    if (running?.pid && running.exitCode === null) {
      running.kill("SIGTERM");
      await until(() => running.exitCode !== null || running.signalCode !== null, "sshd stop");
    }

    rmSync(join(dir, "sshd.pid"), { force: true });
  }

  /** Returns the pid of the agent that runs from our data directory, if any. */
  function agentPid() {
    const pidFile = join(agentDir, "agent.pid");

    if (!existsSync(pidFile)) {
      return undefined;
    }

    const pid = Number(readFileSync(pidFile, "utf8").trim());

    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(agentDir) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async function host() {
    return (await admin.query<Inventory>("queryHost", [`uuid=${hostUuid}`])).inventories[0]!;
  }

  beforeAll(async () => {
    dir = mkdtempSync("/tmp/tsh-");
    agentDir = join(dir, "agent");
    keygen(join(dir, "host_key"));
    keygen(join(dir, "host_key_new"));
    keygen(join(dir, "client"));
    keygen(join(dir, "other"));
    writeFileSync(join(dir, "authorized_keys"), readFileSync(join(dir, "client.pub")), {
      mode: 0o600,
    });
    // Debian's sshd needs its privilege separation directory, which systemd makes at boot.
    mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });

    ip("netns", "add", NAMESPACE);
    ip("link", "add", ROOT_VETH, "type", "veth", "peer", "name", HOST_VETH);
    ip("link", "set", HOST_VETH, "netns", NAMESPACE);
    ip("addr", "add", `${ROOT_ADDRESS}/30`, "dev", ROOT_VETH);
    ip("link", "set", ROOT_VETH, "up");
    ip("-n", NAMESPACE, "addr", "add", `${HOST_ADDRESS}/30`, "dev", HOST_VETH);
    ip("-n", NAMESPACE, "link", "set", HOST_VETH, "up");
    ip("-n", NAMESPACE, "link", "set", "lo", "up");
    await startSshd(join(dir, "host_key"));

    t = await startTestServer("sqlite");
    admin = t.admin;
    await admin.call("updateGlobalConfig", {
      path: { category: "host", name: "agent.dataDir" },
      params: { value: agentDir },
    });
    await admin.call("updateGlobalConfig", {
      path: { category: "host", name: "agent.port" },
      params: { value: String(AGENT_PORT) },
    });
    const zone = (
      await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "z" } })
    ).inventory;
    clusterUuid = (
      await admin.call<{ inventory: Inventory }>("createCluster", {
        params: { zoneUuid: zone.uuid, name: "kvm", hypervisorType: "KVM" },
      })
    ).inventory.uuid;
  }, 60_000);

  afterAll(async () => {
    const pid = agentDir ? agentPid() : undefined;

    if (pid) {
      process.kill(pid, "SIGKILL");
    }

    await t?.stop();
    await stopSshd().catch(() => undefined);

    for (const args of [
      ["link", "del", ROOT_VETH],
      ["netns", "del", NAMESPACE],
    ]) {
      try {
        ip(...args);
      } catch {
        // Already gone, or never made because setup failed earlier.
      }
    }

    if (dir) {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("adds a host with a key", async () => {
    const added = (
      await admin.call<{ inventory: Inventory }>("addKVMHost", {
        params: {
          name: "remote",
          managementIp: HOST_ADDRESS,
          username: "root",
          sshKey: readFileSync(join(dir, "client"), "utf8"),
          sshPort: 22,
          clusterUuid,
        },
      })
    ).inventory;
    hostUuid = added.uuid;
    expect(added.status).toBe("Connected");
    expect(added.lastError).toBeNull();
    expect(added.cpuNum).toBeGreaterThan(0);
    expect(Number(added.totalMemoryCapacity)).toBeGreaterThan(0);
    expect(["kvm", "tcg"]).toContain(added.accelerator);

    const pid = agentPid()!;
    expect(pid).toBeGreaterThan(0);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    expect(cmdline).toContain(`${HOST_ADDRESS}:${AGENT_PORT}`);
    expect(
      cmdline.some((arg) => /\/tstack-agent-[\d.]+-[0-9a-f]{12}\/dist\/main\.js$/.test(arg)),
    ).toBe(true);
    expect(statSync(join(agentDir, "host-secret")).mode & 0o777).toBe(0o600);

    const tags = await t.server.core.kysely
      .selectFrom("tags")
      .select("tag")
      .where("resourceUuid", "=", hostUuid)
      .execute();
    const fingerprint = execFileSync("ssh-keygen", ["-l", "-f", join(dir, "host_key.pub")])
      .toString()
      .split(" ")[1];
    expect(tags.map((tag) => tag.tag)).toContain(`sshHostKey::${fingerprint}`);
  });

  it("keeps the current agent on reconnect", async () => {
    const before = agentPid();
    const back = (
      await admin.call<{ inventory: Inventory }>("reconnectHost", { path: { uuid: hostUuid } })
    ).inventory;
    expect(back.status).toBe("Connected");
    expect(agentPid()).toBe(before);
  });

  it("disconnects on a rejected key", async () => {
    writeFileSync(join(dir, "authorized_keys"), readFileSync(join(dir, "other.pub")));
    await expect(admin.call("reconnectHost", { path: { uuid: hostUuid } })).rejects.toThrow(
      /SSH login as root@172\.31\.254\.2:22 failed: the host rejected the private key/,
    );
    const down = await host();
    expect(down.status).toBe("Disconnected");
    expect(String(down.lastError)).toMatch(/rejected the private key; add the key's public half/);

    appendFileSync(join(dir, "authorized_keys"), readFileSync(join(dir, "client.pub")));
    const back = (
      await admin.call<{ inventory: Inventory }>("reconnectHost", { path: { uuid: hostUuid } })
    ).inventory;
    expect(back.status).toBe("Connected");
  });

  it("rejects a changed host key", async () => {
    await stopSshd();
    await startSshd(join(dir, "host_key_new"));

    await expect(admin.call("reconnectHost", { path: { uuid: hostUuid } })).rejects.toThrow(
      /SSH host key of 172\.31\.254\.2 changed/,
    );
    const down = await host();
    expect(down.status).toBe("Disconnected");
    expect(String(down.lastError)).toMatch(/delete the host and add it again/);

    await stopSshd();
    await startSshd(join(dir, "host_key"));
  });

  it("stops the agent on delete", async () => {
    const pid = agentPid()!;
    expect(pid).toBeGreaterThan(0);
    await admin.call("deleteHost", { path: { uuid: hostUuid } });
    await until(() => !alive(pid), "agent exit");
    expect((await admin.query("queryHost")).inventories).toEqual([]);
  });

  it("reports a rejected password", async () => {
    await expect(
      admin.call("addKVMHost", {
        params: { name: "bare", managementIp: HOST_ADDRESS, username: "root", clusterUuid },
      }),
    ).rejects.toThrow(/params.password: host 172\.31\.254\.2 is reached over SSH/);

    await expect(
      admin.call("addKVMHost", {
        params: {
          name: "password",
          managementIp: HOST_ADDRESS,
          username: "root",
          password: "not-the-password",
          clusterUuid,
        },
      }),
    ).rejects.toThrow(
      /SSH login as root@172\.31\.254\.2:22 failed: the host rejected the password/,
    );
    const [refused] = (await admin.query<Inventory>("queryHost")).inventories;
    expect(refused?.status).toBe("Disconnected");
    expect(String(refused?.lastError)).not.toContain("not-the-password");

    await admin.call("deleteHost", { path: { uuid: refused!.uuid } });
    expect((await admin.query("queryHost")).inventories).toEqual([]);
  });
});
