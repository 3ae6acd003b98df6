import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../exec.js";
import { ensureBridge } from "./bridge.js";
import type { NetworkHost } from "./host.js";
import { tapName } from "./names.js";
import { tableExists } from "./nft.js";
import { applySecurityGroups, removeSecurityGroups } from "./security-group.js";
import { compileRule, compileSecurityGroups, securityGroupTables } from "./security-group-rules.js";
import { Testbed } from "./testbed.js";
import type { NicSecurityRules } from "./types.js";

const NIC1 = "1111111111111111111111111111aaaa";
const NIC2 = "2222222222222222222222222222bbbb";
const GROUP = "99999999999999999999999999999999";

describe("security-group compiler", () => {
  it("compiles a tcp port range from a CIDR", () => {
    const rule = compileRule({
      direction: "ingress",
      protocol: "tcp",
      startPort: 22,
      endPort: 80,
      cidr: "10.0.0.7/8",
    });

    expect(rule).toBe("meta l4proto tcp ip saddr 10.0.0.0/8 tcp dport 22-80 accept");
  });

  it("compiles an egress rule to a remote group", () => {
    const rule = compileRule({ direction: "egress", protocol: "icmp", remoteGroupUuid: GROUP });

    expect(rule).toBe("meta l4proto icmp ip daddr @rg_999999999999 accept");
  });

  it("rejects ports on icmp", () => {
    expect(() => compileRule({ direction: "ingress", protocol: "icmp", startPort: 1 })).toThrow(
      /ports need tcp or udp/,
    );
  });

  it("rejects a reversed port range", () => {
    const rule = { direction: "ingress", protocol: "udp", startPort: 90, endPort: 80 } as const;

    expect(() => compileRule(rule)).toThrow(/end is below start/);
  });

  it("rejects an invalid CIDR", () => {
    expect(() =>
      compileRule({ direction: "ingress", protocol: "all", cidr: "10.0.0.0/33" }),
    ).toThrow(/invalid rule CIDR/);
  });

  it("drops ingress by default", () => {
    const script = compileSecurityGroups([{ nicUuid: NIC1, ips: [], rules: [] }], {});

    expect(script).toContain(`chain in_${tapName(NIC1)} {`);
    expect(script).toMatch(/udp sport 67 udp dport 68 accept\n {4}drop\n/);
  });
});

describe("security groups on a bridge", () => {
  const bed = new Testbed();
  let host: NetworkHost;
  let vm1: string;
  let vm2: string;

  beforeAll(async () => {
    await bed.init();
    host = await bed.addHost("h1");
    await ensureBridge(host, "br_tqn");
    vm1 = await bed.addVm("vm1", host, tapName(NIC1), "br_tqn", "52:54:00:00:00:01");
    vm2 = await bed.addVm("vm2", host, tapName(NIC2), "br_tqn", "52:54:00:00:00:02");
    await run("ip", ["-n", vm1, "addr", "add", "10.88.0.1/24", "dev", "eth0"]);
    await run("ip", ["-n", vm2, "addr", "add", "10.88.0.2/24", "dev", "eth0"]);
  });

  afterAll(async () => {
    await bed.destroy();
    expect(await bed.leftoverNamespaces()).toEqual([]);
    expect(await bed.leftoverRootLinks()).toEqual([]);
  });

  const vm2Rules = (rules: NicSecurityRules["rules"]): NicSecurityRules => ({
    nicUuid: NIC2,
    ips: ["10.88.0.2"],
    rules,
  });

  it("pings freely without rules", async () => {
    expect(await bed.ping(vm1, "10.88.0.2")).toBe(true);
  });

  it("drops ingress but lets replies in", async () => {
    const cmd = { nics: [vm2Rules([])], remoteGroups: {} };
    await applySecurityGroups(host, cmd);
    await applySecurityGroups(host, cmd);

    expect(await bed.ping(vm1, "10.88.0.2")).toBe(false);
    expect(await bed.ping(vm2, "10.88.0.1")).toBe(true);
  });

  it("allows icmp from a CIDR", async () => {
    const rule = { direction: "ingress", protocol: "icmp", cidr: "10.88.0.1/32" } as const;
    await applySecurityGroups(host, { nics: [vm2Rules([rule])], remoteGroups: {} });

    expect(await bed.ping(vm1, "10.88.0.2")).toBe(true);
  });

  it("drops icmp when only tcp is allowed", async () => {
    const rule = { direction: "ingress", protocol: "tcp", startPort: 22 } as const;
    await applySecurityGroups(host, { nics: [vm2Rules([rule])], remoteGroups: {} });

    expect(await bed.ping(vm1, "10.88.0.2")).toBe(false);
  });

  it("follows remote group membership", async () => {
    const rule = { direction: "ingress", protocol: "all", remoteGroupUuid: GROUP } as const;
    const nics = [vm2Rules([rule])];
    await applySecurityGroups(host, { nics, remoteGroups: { [GROUP]: ["10.88.0.1"] } });

    expect(await bed.ping(vm1, "10.88.0.2")).toBe(true);

    await applySecurityGroups(host, { nics: [], remoteGroups: { [GROUP]: ["10.88.0.9"] } });

    expect(await bed.ping(vm1, "10.88.0.2")).toBe(false);
  });

  it("limits egress once an egress rule exists", async () => {
    const open = { direction: "ingress", protocol: "all", cidr: "10.88.0.0/24" } as const;
    const https = { direction: "egress", protocol: "tcp", startPort: 443 } as const;
    const nic1 = { nicUuid: NIC1, ips: ["10.88.0.1"], rules: [https] };
    await applySecurityGroups(host, { nics: [nic1, vm2Rules([open])], remoteGroups: {} });

    expect(await bed.ping(vm1, "10.88.0.2")).toBe(false);

    const icmp = { direction: "egress", protocol: "icmp" } as const;
    const widened = { ...nic1, rules: [https, icmp] };
    await applySecurityGroups(host, { nics: [widened], remoteGroups: {} });

    expect(await bed.ping(vm1, "10.88.0.2")).toBe(true);
  });

  it("drops ingress to a NIC without rules", async () => {
    expect(await bed.ping(vm2, "10.88.0.1")).toBe(false);
  });

  it("removes the tables with the last NIC", async () => {
    await removeSecurityGroups(host, { nicUuids: [NIC1, NIC2] });

    expect(await bed.ping(vm1, "10.88.0.2")).toBe(true);
    const tables = securityGroupTables(host.namespacePrefix);
    expect(await tableExists(host, "bridge", tables.bridge)).toBe(false);
    expect(await tableExists(host, "inet", tables.conntrack)).toBe(false);
  });
});
