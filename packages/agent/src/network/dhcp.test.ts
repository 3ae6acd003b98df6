import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../exec.js";
import { releaseL2NetworkIfUnused } from "./bridge.js";
import { applyDhcp, type DhcpServer, readDhcpEntries, releaseDhcp } from "./dhcp.js";
import { linkExists, listNamespaces, type NetworkHost } from "./host.js";
import { applyUserdata, releaseUserdata } from "./metadata.js";
import { tapName } from "./names.js";
import { applySecurityGroups, removeSecurityGroups } from "./security-group.js";
import { BUSYBOX, Testbed } from "./testbed.js";
import type { L3NetworkSpec } from "./types.js";

const NIC1 = "11111111111111111111111111111111";
const NIC2 = "22222222222222222222222222222222";
const NIC3 = "33333333333333333333333333333333";
const VM1_MAC = "52:54:00:77:01:10";
const VM2_MAC = "52:54:00:77:01:20";

const l3: L3NetworkSpec = {
  l3NetworkUuid: "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3",
  l2: { type: "NoVlan", l2NetworkUuid: "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2" },
  cidr: "10.77.1.0/24",
  gateway: "10.77.1.1",
  dhcpServerIp: "10.77.1.2",
  dnsServers: ["10.77.1.1"],
  dnsDomain: "tqn.test",
  leaseSeconds: 3600,
  mtu: 1400,
};

describe("DHCP and metadata in a namespace", () => {
  const bed = new Testbed();
  let host: NetworkHost;
  let server: DhcpServer;
  let vm1: string;
  let vm2: string;

  beforeAll(async () => {
    await bed.init();
    host = await bed.addHost("h1");
  });

  afterAll(async () => {
    await bed.destroy();
    expect(await bed.leftoverNamespaces()).toEqual([]);
    expect(await bed.leftoverRootLinks()).toEqual([]);
  });

  it("prepares the DHCP namespace twice without change", async () => {
    const started = performance.now();
    const cmd = { l3, entries: [{ mac: VM1_MAC, ip: "10.77.1.110", hostname: "vm1" }] };
    server = await applyDhcp(host, cmd);
    console.log(`first DHCP apply took ${Math.round(performance.now() - started)} ms`);

    const again = await applyDhcp(host, cmd);

    expect(again).toEqual(server);
    expect(await listNamespaces()).toContain(server.namespace);
    expect(await readDhcpEntries(host, l3.l3NetworkUuid)).toEqual(cmd.entries);
  });

  it("leases exactly the reserved address", async () => {
    vm1 = await bed.addVm("vm1", host, tapName(NIC1), server.bridge, VM1_MAC);
    const started = performance.now();
    const lease = await bed.requestLease(vm1);
    console.log(`lease took ${Math.round(performance.now() - started)} ms`);

    expect(lease?.ip).toBe("10.77.1.110");
    expect(lease?.mask).toBe("24");
    expect(lease?.hostname).toBe("vm1");
    expect(lease?.router).toBe("10.77.1.1");
    expect(lease?.mtu).toBe("1400");
    expect(lease?.domain).toBe("tqn.test");
    expect(lease?.staticroutes).toBe("169.254.169.254/32 10.77.1.2 0.0.0.0/0 10.77.1.1");
  });

  it("gives an unknown MAC no lease", async () => {
    vm2 = await bed.addVm("vm2", host, tapName(NIC2), server.bridge, VM2_MAC);

    expect(await bed.requestLease(vm2)).toBeUndefined();
  });

  it("leases a MAC added later after SIGHUP", async () => {
    await applyDhcp(host, { l3, entries: [{ mac: VM2_MAC, ip: "10.77.1.120", hostname: "vm2" }] });
    const lease = await bed.requestLease(vm2);

    expect(lease?.ip).toBe("10.77.1.120");
    expect(lease?.hostname).toBe("vm2");
  });

  it("serves user-data over the option-121 route", async () => {
    const userdata = "#cloud-config\nhostname: vm1\n";
    await applyUserdata(host, {
      l3NetworkUuid: l3.l3NetworkUuid,
      ip: "10.77.1.110",
      vmUuid: "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1",
      hostname: "vm1",
      userdata,
    });
    const fetch = (vm: string, path: string) => {
      const url = `http://169.254.169.254${path}`;
      const args = ["netns", "exec", vm, BUSYBOX, "wget", "-q", "-O", "-", url];
      return run("ip", args, { okExitCodes: [1], timeoutMs: 10_000 });
    };

    expect((await fetch(vm1, "/latest/user-data")).stdout).toBe(userdata);
    expect((await fetch(vm1, "/latest/meta-data/hostname")).stdout).toBe("vm1");
    expect((await fetch(vm1, "/latest/meta-data/instance-id")).stdout).toBe(
      "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1",
    );

    const missing = await fetch(vm2, "/latest/user-data");
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/404/);

    await releaseUserdata(host, { l3NetworkUuid: l3.l3NetworkUuid, ip: "10.77.1.110" });
    expect((await fetch(vm1, "/latest/user-data")).stderr).toMatch(/404/);
  });

  it("keeps DHCP and metadata open under security groups", async () => {
    const https = { direction: "egress", protocol: "tcp", startPort: 443 } as const;
    await applySecurityGroups(host, {
      nics: [{ nicUuid: NIC1, ips: ["10.77.1.110"], rules: [https] }],
      remoteGroups: {},
    });
    await applyUserdata(host, {
      l3NetworkUuid: l3.l3NetworkUuid,
      ip: "10.77.1.110",
      vmUuid: "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1",
      hostname: "vm1",
    });
    await run("ip", ["-n", vm1, "addr", "flush", "dev", "eth0"]);

    expect((await bed.requestLease(vm1))?.ip).toBe("10.77.1.110");

    const url = "http://169.254.169.254/latest/meta-data/hostname";
    const args = ["netns", "exec", vm1, BUSYBOX, "wget", "-q", "-O", "-", url];
    const hostname = await run("ip", args, { timeoutMs: 10_000 });
    expect(hostname.stdout).toBe("vm1");

    await removeSecurityGroups(host, { nicUuids: [NIC1] });
  });

  it("resolves a VM name in the DNS domain", async () => {
    const { stdout } = await run("ip", [
      ...["netns", "exec", vm1, BUSYBOX, "nslookup", "vm2.tqn.test", "10.77.1.2"],
    ]);

    expect(stdout).toMatch(/10\.77\.1\.120/);
  });

  it("forwards other names to the L3's DNS servers", async () => {
    const pidFile = `${bed.dir}/upstream-dns.pid`;
    await run("ip", [
      ...["netns", "exec", vm2, "dnsmasq", "--conf-file=/dev/null", "--no-resolv", "--no-hosts"],
      ...["--listen-address=10.77.1.120", "--bind-interfaces", `--pid-file=${pidFile}`],
      "--address=/example.test/192.0.2.77",
    ]);
    const upstream = Number((await readFile(pidFile, "utf8")).trim());

    try {
      const dnsmasqPid = () => readFile(`${server.stateDir}/dnsmasq.pid`, "utf8");
      const before = await dnsmasqPid();
      await applyDhcp(host, { l3: { ...l3, dnsServers: ["10.77.1.120"] }, entries: [] });

      // The upstream refuses the AAAA query, which makes busybox nslookup exit with 1.
      const lookup = await run(
        "ip",
        ["netns", "exec", vm1, BUSYBOX, "nslookup", "www.example.test", "10.77.1.2"],
        { okExitCodes: [1] },
      );

      expect(await dnsmasqPid()).not.toBe(before);
      expect(lookup.stdout).toMatch(/Address: 192\.0\.2\.77/);
      expect(await readDhcpEntries(host, l3.l3NetworkUuid)).toHaveLength(2);
    } finally {
      process.kill(upstream, "SIGTERM");
    }
  });

  it("deletes the namespace with the last NIC", async () => {
    const first = await releaseDhcp(host, { l3NetworkUuid: l3.l3NetworkUuid, macs: [VM2_MAC] });
    expect(first.serverDeleted).toBe(false);
    expect(await listNamespaces()).toContain(server.namespace);

    const last = await releaseDhcp(host, { l3NetworkUuid: l3.l3NetworkUuid, macs: [VM1_MAC] });
    expect(last.serverDeleted).toBe(true);
    expect(await listNamespaces()).not.toContain(server.namespace);
    expect(await linkExists(host, server.bridge)).toBe(true);
  });

  it("releases the bridge once its taps are gone", async () => {
    expect(await releaseL2NetworkIfUnused(host, l3.l2)).toBe(false);

    for (const nic of [NIC1, NIC2, NIC3]) {
      await run("ip", ["-n", host.netns!, "link", "delete", tapName(nic)], { okExitCodes: [1] });
    }

    expect(await releaseL2NetworkIfUnused(host, l3.l2)).toBe(true);
    expect(await linkExists(host, server.bridge)).toBe(false);
  });
});

describe("DHCP namespace failures and concurrency", () => {
  const bed = new Testbed();
  let host: NetworkHost;
  const other: L3NetworkSpec = {
    ...l3,
    l3NetworkUuid: "a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8",
    l2: { type: "NoVlan", l2NetworkUuid: "b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8" },
  };

  beforeAll(async () => {
    await bed.init();
    host = await bed.addHost("h1");
  });

  afterAll(async () => {
    await bed.destroy();
    expect(await bed.leftoverNamespaces()).toEqual([]);
    expect(await bed.leftoverRootLinks()).toEqual([]);
  });

  it("rejects an invalid DNS server before any change", async () => {
    const bad = { ...other, dnsServers: ["10.0.0.1\nconf-file=/etc/passwd"] };
    const apply = applyDhcp(host, { l3: bad, entries: [] });

    await expect(apply).rejects.toThrow(/invalid DNS server "10\.0\.0\.1\\nconf-file/);
    expect(await bed.leftoverNamespaces()).toEqual([host.netns]);
    expect(await linkExists(host, "br_b8b8b8b8b8b8")).toBe(false);
    expect(existsSync(`${host.stateDir}/l3/${other.l3NetworkUuid}`)).toBe(false);
  });

  it("rolls back the namespace when the metadata server fails", async () => {
    const broken = { ...host, metadataServerScript: `${bed.dir}/missing.mjs` };
    const apply = applyDhcp(broken, { l3: other, entries: [] });

    await expect(apply).rejects.toThrow(/metadata server exited with code 1/);
    expect(await bed.leftoverNamespaces()).toEqual([host.netns]);
    expect(await linkExists(host, "dh_a8a8a8a8a8a8")).toBe(false);
    expect(await linkExists(host, "br_b8b8b8b8b8b8")).toBe(false);
    expect(existsSync(`${host.stateDir}/l3/${other.l3NetworkUuid}`)).toBe(false);

    const pids = await run("ip", ["netns", "pids", host.netns!]);
    expect(pids.stdout.trim()).toBe("");
  });

  it("keeps every entry of concurrent applies", async () => {
    const entries = Array.from({ length: 4 }, (_, i) => ({
      mac: `52:54:00:77:08:1${i}`,
      ip: `10.77.1.${10 + i}`,
      hostname: `vm${i}`,
    }));

    await Promise.all(entries.map((entry) => applyDhcp(host, { l3: other, entries: [entry] })));

    const stored = await readDhcpEntries(host, other.l3NetworkUuid);
    expect(stored).toHaveLength(4);

    const macs = entries.map((entry) => entry.mac);
    const release = await releaseDhcp(host, { l3NetworkUuid: other.l3NetworkUuid, macs });
    expect(release.serverDeleted).toBe(true);
    expect(await bed.leftoverNamespaces()).toEqual([host.netns]);
  });
});
