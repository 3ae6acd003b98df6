/**
 * Network namespaces that stand in for hosts, VMs and an outside network in this directory's
 * tests. Every name starts with `tqn-` and a per-run id, so cleanup can find whatever a failed
 * test left behind without touching anything else on the machine.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { run } from "../exec.js";
import { listNamespaces, type NetworkHost } from "./host.js";

/** busybox-static by absolute path, so no other `busybox` on PATH is ever run. */
export const BUSYBOX = "/bin/busybox";

/** udhcpc script: applies the lease, option-121 routes first, and records the lease. */
const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set dev "$interface" up
    ;;
  bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        ip route replace "$1" via "$2" dev "$interface"
        shift 2
      done
    elif [ -n "$router" ]; then
      ip route replace default via "$router" dev "$interface"
    fi
    printf 'ip=%s\nmask=%s\nhostname=%s\nrouter=%s\nstaticroutes=%s\nmtu=%s\ndomain=%s\ndns=%s\n' \
      "$ip" "$mask" "$hostname" "$router" "$staticroutes" "$mtu" "$domain" "$dns" > "$LEASE_FILE"
    ;;
esac
exit 0
`;

/** Namespaces and files of one test run. */
export class Testbed {
  readonly id = `tqn-${randomBytes(2).toString("hex")}`;
  readonly logger = pino({ level: process.env.TQN_LOG_LEVEL ?? "silent" });
  dir = "";

  /**
   * Creates the run's directory and the metadata server script. Node 20 cannot run TypeScript, so
   * the server is transpiled here with the workspace's TypeScript, a development dependency.
   */
  async init(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), `${this.id}-`));
    await chmod(this.dir, 0o755);

    const ts = (await import("typescript")).default;
    const source = await readFile(new URL("./metadata-server.ts", import.meta.url), "utf8");
    const compilerOptions = { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 };
    const output = ts.transpileModule(source, { compilerOptions }).outputText;
    await writeFile(join(this.dir, "metadata-server.mjs"), output);
    await writeFile(join(this.dir, "udhcpc.sh"), UDHCPC_SCRIPT);
    await chmod(join(this.dir, "udhcpc.sh"), 0o755);
  }

  /** Creates a namespace that acts as a host, with its own agent state directory. */
  async addHost(label: string): Promise<NetworkHost> {
    const netns = await this.addNamespace(label);
    await run("ip", ["netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    return {
      netns,
      namespacePrefix: `${this.id}-${label}-`,
      stateDir: join(this.dir, label),
      metadataServerScript: join(this.dir, "metadata-server.mjs"),
      logger: this.logger.child({ host: label }),
    };
  }

  async addNamespace(label: string): Promise<string> {
    const name = `${this.id}-${label}`;
    await run("ip", ["netns", "add", name]);
    await run("ip", ["-n", name, "link", "set", "dev", "lo", "up"]);
    return name;
  }

  /**
   * Creates a "VM": a namespace whose eth0 is one end of a veth pair. The other end is named like
   * the VM NIC's tap and joins `bridge` in the host namespace.
   */
  async addVm(label: string, host: NetworkHost, port: string, bridge: string, mac: string) {
    const vm = await this.addNamespace(label);
    await run("ip", [
      ...["-n", host.netns!, "link", "add", port, "type", "veth"],
      ...["peer", "name", "eth0", "netns", vm],
    ]);
    await run("ip", ["-n", vm, "link", "set", "dev", "eth0", "address", mac, "up"]);
    await run("ip", ["-n", host.netns!, "link", "set", "dev", port, "master", bridge, "up"]);
    return vm;
  }

  /** Runs busybox udhcpc once in a VM namespace; returns the recorded lease or undefined. */
  async requestLease(vm: string): Promise<Record<string, string> | undefined> {
    const leaseFile = join(this.dir, `${vm}.lease`);
    await rm(leaseFile, { force: true });
    const result = await run(
      "ip",
      [
        ...["netns", "exec", vm, BUSYBOX, "udhcpc", "-i", "eth0", "-n", "-q", "-f"],
        ...["-t", "3", "-T", "1", "-O", "staticroutes", "-O", "mtu"],
        ...["-s", join(this.dir, "udhcpc.sh")],
      ],
      { env: { LEASE_FILE: leaseFile }, okExitCodes: [1], timeoutMs: 30_000 },
    );

    if (result.exitCode !== 0) {
      return undefined;
    }

    const lines = (await readFile(leaseFile, "utf8")).trim().split("\n");
    return Object.fromEntries(
      lines.map((line) => [line.split("=")[0], line.slice(line.indexOf("=") + 1)]),
    );
  }

  /** Pings once from a namespace; returns whether a reply came back. */
  async ping(netns: string, address: string): Promise<boolean> {
    const result = await run(
      "ip",
      ["netns", "exec", netns, BUSYBOX, "ping", "-c", "1", "-W", "2", address],
      { okExitCodes: [1] },
    );
    return result.exitCode === 0;
  }

  /** Lists links in the machine's own namespace whose name starts with `tqn`. */
  async leftoverRootLinks(): Promise<string[]> {
    const { stdout } = await run("ip", ["-j", "link", "show"]);
    const links = JSON.parse(stdout) as { ifname: string }[];
    return links.map((link) => link.ifname).filter((name) => name.startsWith("tqn"));
  }

  /** Lists the namespaces of this run still present. */
  async leftoverNamespaces(): Promise<string[]> {
    return (await listNamespaces()).filter((name) => name.startsWith(this.id));
  }

  /**
   * Ends the processes still inside this run's namespaces, by PID, then deletes the namespaces
   * (which destroys their links) and the temporary directory.
   */
  async destroy(): Promise<void> {
    for (const netns of await this.leftoverNamespaces()) {
      const { stdout } = await run("ip", ["netns", "pids", netns]);

      for (const pid of stdout.split("\n").filter(Boolean).map(Number)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // It exited between the listing and the kill.
        }
      }

      await run("ip", ["netns", "delete", netns]);
    }

    if (this.dir !== "") {
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}
