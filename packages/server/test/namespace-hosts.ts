import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";

/** One namespace host as the test reaches it. */
export interface NamespaceHost {
  namespace: string;
  managementIp: string;
  vtepIp: string;
  /** Path on this machine of the directory the host mounts at `<dir>/agent`. */
  root: string;
}

const SSHD_CONFIG = (address: string, dir: string, hostDir: string) =>
  [
    "Port 22",
    `ListenAddress ${address}`,
    `HostKey ${join(hostDir, "host_key")}`,
    `PidFile ${join(hostDir, "sshd.pid")}`,
    `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
    "PermitRootLogin yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    // The key files live under /tmp, which is world-writable.
    "StrictModes no",
    "UsePAM no",
    "Subsystem sftp internal-sftp",
    "",
  ].join("\n");

// Runs as the host's first process: its own view of <dir>/agent and /run/netns, then sshd.
const HOST_INIT = `#!/bin/sh
set -e
mount --bind "$1" "$2"
mount -t tmpfs -o mode=755 tmpfs /run/netns
exec /usr/sbin/sshd -D -f "$3" -E "$4"
`;

function quiet(command: string, args: string[]) {
  try {
    execFileSync(command, args, { stdio: "ignore" });
  } catch {
    // Already gone, or never made because the setup failed earlier.
  }
}

function ip(...args: string[]) {
  execFileSync("ip", args, { stdio: "pipe" });
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

/** Pids of processes whose command line names `dir`: sshd, agents, QEMU, dnsmasq, metadata. */
export function processesUnder(dir: string) {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .filter((entry) => {
      try {
        return readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(dir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function listNames(args: string[]) {
  const out = execFileSync("ip", ["-j", ...args], { encoding: "utf8" }).trim();
  const entries = out === "" ? [] : (JSON.parse(out) as { name?: string; ifname?: string }[]);
  return entries.map((entry) => entry.name ?? entry.ifname ?? "");
}

/**
 * Creates two hosts made of network namespaces, each with its own sshd, so the management node
 * adds them over SSH as it adds any remote host. Every name carries a random `<id>`:
 *
 * - A bridge `tvx<id>m` in this namespace has `<management>.1/24`, where the server listens.
 *   Host N reaches it from `<management>.(N+1)` over a veth pair.
 * - One veth pair runs straight between the two hosts, with `<underlay>.N/24` in host N. It
 *   carries VXLAN and nothing else.
 * - Each host has its own mount namespace, in which `<dir>/agent` is that host's own directory
 *   and `/run/netns` lists only its own namespaces, as on separate machines. The agent's data
 *   directory, bundle and storage live there, so the DHCP namespaces of two agents never collide.
 */
export async function createNamespaceHosts(management: string, underlay: string) {
  const id = Math.random().toString(16).slice(2, 6);
  const prefix = `tvx${id}`;
  const bridge = `${prefix}m`;
  const dir = mkdtempSync("/tmp/tvx-");
  // dnsmasq drops root and rereads its hosts file below here, so every level must be traversable.
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, "agent"));
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "client")]);
  writeFileSync(join(dir, "authorized_keys"), readFileSync(join(dir, "client.pub")));
  writeFileSync(join(dir, "host-init.sh"), HOST_INIT, { mode: 0o755 });

  const sshds: ChildProcess[] = [];
  const hosts: NamespaceHost[] = [1, 2].map((n) => ({
    namespace: `tvx-${id}-h${n}`,
    managementIp: `${management}.${n + 1}`,
    vtepIp: `${underlay}.${n}`,
    root: join(dir, `h${n}`),
  }));

  async function cleanup() {
    for (const pid of processesUnder(dir)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // It ended between the listing and the kill.
      }
    }

    await new Promise((resolve) => setTimeout(resolve, 300));

    for (const host of hosts) {
      quiet("ip", ["netns", "delete", host.namespace]);
    }

    quiet("ip", ["link", "delete", bridge]);

    for (const n of [1, 2]) {
      quiet("ip", ["link", "delete", `${prefix}m${n}`]);
    }

    rmSync(dir, { recursive: true, force: true });
  }

  /** What the test created and did not remove: processes, namespaces and links. */
  function leftovers() {
    return [
      ...processesUnder(dir).map((pid) => `process ${pid}`),
      ...listNames(["netns", "list"]).filter((name) => name.startsWith(`tvx-${id}`)),
      ...listNames(["link", "show"]).filter((name) => name.startsWith(prefix)),
      ...(existsSync(dir) ? [dir] : []),
    ];
  }

  try {
    ip("link", "add", bridge, "type", "bridge");
    ip("addr", "add", `${management}.1/24`, "dev", bridge);
    ip("link", "set", bridge, "up");
    ip("link", "add", `${prefix}u1`, "type", "veth", "peer", "name", `${prefix}u2`);

    for (const [index, host] of hosts.entries()) {
      const n = index + 1;
      ip("netns", "add", host.namespace);
      ip("-n", host.namespace, "link", "set", "lo", "up");

      ip(
        ...["link", "add", `${prefix}m${n}`, "type", "veth"],
        ...["peer", "name", "mgmt0", "netns", host.namespace],
      );
      ip("link", "set", `${prefix}m${n}`, "master", bridge, "up");
      ip("-n", host.namespace, "addr", "add", `${host.managementIp}/24`, "dev", "mgmt0");
      ip("-n", host.namespace, "link", "set", "mgmt0", "up");

      ip("link", "set", `${prefix}u${n}`, "netns", host.namespace);
      ip("-n", host.namespace, "link", "set", `${prefix}u${n}`, "name", "underlay0");
      ip("-n", host.namespace, "addr", "add", `${host.vtepIp}/24`, "dev", "underlay0");
      ip("-n", host.namespace, "link", "set", "underlay0", "up");

      const hostDir = join(dir, `h${n}-ssh`);
      mkdirSync(hostDir);
      mkdirSync(host.root, { mode: 0o755 });
      chmodSync(host.root, 0o755);
      execFileSync("ssh-keygen", [
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        join(hostDir, "host_key"),
      ]);
      writeFileSync(join(hostDir, "sshd_config"), SSHD_CONFIG(host.managementIp, dir, hostDir));
      sshds.push(
        spawn(
          "ip",
          [
            ...["netns", "exec", host.namespace, "unshare", "--mount", "--propagation", "private"],
            ...["sh", join(dir, "host-init.sh"), host.root, join(dir, "agent")],
            ...[join(hostDir, "sshd_config"), join(hostDir, "sshd.log")],
          ],
          { stdio: "ignore" },
        ),
      );
    }

    for (const [index, host] of hosts.entries()) {
      const deadline = Date.now() + 20_000;

      while (!(await portOpen(host.managementIp, 22))) {
        if (Date.now() > deadline || sshds[index]!.exitCode !== null) {
          const log = join(dir, `h${index + 1}-ssh`, "sshd.log");
          throw new Error(
            `sshd of ${host.namespace} did not listen: ${existsSync(log) ? readFileSync(log, "utf8") : "no log"}`,
          );
        }

        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } catch (error) {
    await cleanup();
    throw error;
  }

  return {
    dir,
    hosts,
    /** The private key the hosts' sshd accept for root. */
    sshKey: readFileSync(join(dir, "client"), "utf8"),
    /** The data directory every host's agent uses, in each host's own view. */
    agentDataDir: join(dir, "agent", "data"),
    /** The directory under which each host keeps its own storage. */
    hostDir: join(dir, "agent"),
    cleanup,
    leftovers,
  };
}
