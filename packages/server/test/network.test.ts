import { sha512Hex } from "@tstack/api";
import { ApiRequestError, type TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NicService } from "../src/compute/vm-resources.js";
import { newUuid } from "../src/core/ids.js";
import { dialects, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

const FLAT = "f1b7a78b680fb97d45b686eac3a16d98";

/** Expects an API error (from the REST API) or a service ApiError (from the NIC service). */
async function expectApiError(promise: Promise<unknown>, code: string, details?: RegExp) {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(Error);
  expect((error as { code?: string }).code).toBe(code);

  if (details) {
    const text =
      error instanceof ApiRequestError ? String(error.details) : (error as Error).message;
    expect(text).toMatch(details);
  }
}

async function create(admin: TstackClient, api: string, params: object, path?: object) {
  const reply = await admin.call<{ inventory: Inventory }>(api, {
    params: params as Record<string, unknown>,
    path: path as Record<string, string>,
  });
  return reply.inventory;
}

describe.each(dialects)("networks on %s", (dialect) => {
  let t: TestServer;
  let admin: TstackClient;
  let zone: Inventory;
  let nics: NicService;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = t.admin;
    zone = await create(admin, "createZone", { name: "z" });
    nics = t.server.core.services.nics!;
  });

  afterAll(async () => {
    await t?.stop();
  });

  async function l3WithRange(cidr = "10.20.0.0/24", systemTags?: string[]) {
    const l2 = await create(admin, "createL2NoVlanNetwork", { name: "l2", zoneUuid: zone.uuid });
    const l3 = await create(admin, "createL3Network", {
      name: "l3",
      l2NetworkUuid: l2.uuid,
      ...(systemTags ? { systemTags } : {}),
    });
    await create(
      admin,
      "addIpRangeByNetworkCidr",
      { name: "r", networkCidr: cidr },
      { l3NetworkUuid: l3.uuid },
    );
    return l3;
  }

  async function allocate(
    l3Uuid: string,
    staticIp?: string,
    accountUuid = "36c27e8ff05c4780bf6d2fa65700f22e",
  ) {
    const vmUuid = newUuid();
    await t.server.core.transact((tx) =>
      nics.allocateNics(tx, {
        vmUuid,
        accountUuid,
        l3NetworkUuids: [l3Uuid],
        staticIps: staticIp ? { [l3Uuid]: staticIp } : {},
      }),
    );
    const reply = await admin.call<{ inventories: Inventory[] }>("queryVmNic", {
      query: { q: `vmInstanceUuid=${vmUuid}` },
    });
    return { vmUuid, nic: reply.inventories[0]! };
  }

  it("creates L2 networks and rejects bad VLAN ids and unknown zones", async () => {
    const noVlan = await create(admin, "createL2NoVlanNetwork", {
      name: "flat",
      zoneUuid: zone.uuid,
      physicalInterface: "eth9",
    });
    expect(noVlan).toMatchObject({ type: "L2NoVlanNetwork", physicalInterface: "eth9" });
    const vlan = await create(admin, "createL2VlanNetwork", {
      name: "v100",
      zoneUuid: zone.uuid,
      physicalInterface: "eth9",
      vlan: 100,
    });
    expect(vlan).toMatchObject({ type: "L2VlanNetwork", vlan: 100 });

    await expectApiError(
      create(admin, "createL2VlanNetwork", {
        name: "bad",
        zoneUuid: zone.uuid,
        physicalInterface: "eth9",
        vlan: 4095,
      }),
      "SYS.1007",
      /vlan/,
    );
    await expectApiError(
      create(admin, "createL2VlanNetwork", {
        name: "dup",
        zoneUuid: zone.uuid,
        physicalInterface: "eth9",
        vlan: 100,
      }),
      "SYS.1007",
      /VLAN 100 on eth9 is already/,
    );
    await expectApiError(
      create(admin, "createL2NoVlanNetwork", { name: "x", zoneUuid: newUuid() }),
      "SYS.1007",
      /params.zoneUuid: zone .* was not found/,
    );

    const queried = await admin.call<{ inventories: Inventory[] }>("queryL2Network", {
      query: { q: "type=L2VlanNetwork" },
    });
    expect(queried.inventories.map((l2) => l2.uuid)).toContain(vlan.uuid);
  });

  it("takes VNIs from pool ranges in order until they run out", async () => {
    const pool = await create(admin, "createL2VxlanNetworkPool", {
      name: "pool",
      zoneUuid: zone.uuid,
      vtepCidr: "192.168.77.0/24",
    });
    await create(
      admin,
      "createVniRange",
      { name: "r", startVni: 5000, endVni: 5001 },
      { l2NetworkUuid: pool.uuid },
    );
    await expectApiError(
      create(
        admin,
        "createVniRange",
        { name: "overlap", startVni: 4000, endVni: 5000 },
        { l2NetworkUuid: pool.uuid },
      ),
      "SYS.1007",
      /overlap/,
    );

    const vxlan = (vni?: number) =>
      create(admin, "createL2VxlanNetwork", {
        name: "vx",
        zoneUuid: zone.uuid,
        poolUuid: pool.uuid,
        ...(vni ? { vni } : {}),
      });
    expect((await vxlan()).vni).toBe(5000);
    await expectApiError(vxlan(5000), "SYS.1007", /VNI 5000 is already used/);
    await expectApiError(vxlan(6000), "SYS.1007", /outside every VNI range/);
    expect((await vxlan()).vni).toBe(5001);
    await expectApiError(vxlan(), "SYS.1006", /no free VNI left/);

    const [queried] = (
      await admin.call<{ inventories: Inventory[] }>("queryL2Network", {
        path: { uuid: pool.uuid },
      })
    ).inventories;
    expect(queried!.attachedVniRanges).toHaveLength(1);
    await expectApiError(
      admin.call("deleteL2Network", { path: { uuid: pool.uuid } }),
      "SYS.1013",
      /delete its VXLAN networks first/,
    );
  });

  it("attaches a pool's VXLAN networks with the pool", async () => {
    const cluster = await create(admin, "createCluster", {
      zoneUuid: zone.uuid,
      name: "vx",
      hypervisorType: "KVM",
    });
    const pool = await create(admin, "createL2VxlanNetworkPool", {
      name: "attached-pool",
      zoneUuid: zone.uuid,
      vtepCidr: "192.168.78.0/24",
    });
    await create(
      admin,
      "createVniRange",
      { name: "r", startVni: 7000, endVni: 7009 },
      { l2NetworkUuid: pool.uuid },
    );
    const vxlan = () =>
      create(admin, "createL2VxlanNetwork", {
        name: "vx",
        zoneUuid: zone.uuid,
        poolUuid: pool.uuid,
      });
    const attachedClusters = async (uuid: string) => {
      const [l2] = (
        await admin.call<{ inventories: Inventory[] }>("queryL2Network", { path: { uuid } })
      ).inventories;
      return l2!.attachedClusterUuids;
    };

    const before = await vxlan();
    await admin.call("attachL2NetworkToCluster", {
      path: { l2NetworkUuid: pool.uuid, clusterUuid: cluster.uuid },
    });
    const after = await vxlan();
    expect(await attachedClusters(pool.uuid)).toEqual([cluster.uuid]);
    expect(await attachedClusters(before.uuid)).toEqual([cluster.uuid]);
    expect(after.attachedClusterUuids).toEqual([cluster.uuid]);

    const l3 = await create(admin, "createL3Network", { name: "l3", l2NetworkUuid: after.uuid });
    expect(await nics.clustersReaching!([l3.uuid])).toEqual([cluster.uuid]);

    await admin.call("detachL2NetworkFromCluster", {
      path: { l2NetworkUuid: pool.uuid, clusterUuid: cluster.uuid },
    });
    expect(await attachedClusters(pool.uuid)).toEqual([]);
    expect(await attachedClusters(before.uuid)).toEqual([]);
    expect(await attachedClusters(after.uuid)).toEqual([]);
  });

  it("validates IP ranges: one CIDR, no overlap, gateway outside, sane CIDR", async () => {
    const l2 = await create(admin, "createL2NoVlanNetwork", { name: "l2", zoneUuid: zone.uuid });
    const l3 = await create(admin, "createL3Network", { name: "l3", l2NetworkUuid: l2.uuid });
    const path = { l3NetworkUuid: l3.uuid };
    const range = (params: object) => create(admin, "addIpRange", { name: "r", ...params }, path);
    const base = { netmask: "255.255.255.0", gateway: "10.1.0.1" };

    const first = await range({ startIp: "10.1.0.10", endIp: "10.1.0.50", ...base });
    expect(first).toMatchObject({ networkCidr: "10.1.0.0/24", prefixLen: 24 });
    await expectApiError(
      range({ startIp: "10.1.0.40", endIp: "10.1.0.60", ...base }),
      "SYS.1007",
      /overlaps range/,
    );
    await expectApiError(
      range({
        startIp: "10.1.0.100",
        endIp: "10.1.0.110",
        netmask: "255.255.255.0",
        gateway: "10.1.0.105",
      }),
      "SYS.1007",
      /params.gateway: gateway 10.1.0.105 lies inside the range/,
    );
    await expectApiError(
      range({
        startIp: "10.2.0.10",
        endIp: "10.2.0.20",
        netmask: "255.255.255.0",
        gateway: "10.2.0.1",
      }),
      "SYS.1007",
      /must lie in that one CIDR/,
    );
    await expectApiError(
      range({
        startIp: "10.1.0.60",
        endIp: "10.1.0.70",
        netmask: "255.0.255.0",
        gateway: "10.1.0.1",
      }),
      "SYS.1007",
      /params.netmask/,
    );
    await expectApiError(
      range({ startIp: "10.1.0.60", endIp: "10.1.1.70", ...base }),
      "SYS.1007",
      /params.endIp/,
    );
    await expectApiError(
      range({ startIp: "10.1.0.300", endIp: "10.1.0.70", ...base }),
      "SYS.1007",
      /startIp/,
    );
    await range({ startIp: "10.1.0.60", endIp: "10.1.0.70", ...base });

    const byCidr = (params: object) =>
      create(admin, "addIpRangeByNetworkCidr", { name: "c", ...params }, path);
    await expectApiError(
      byCidr({ networkCidr: "10.9.0.5/24" }),
      "SYS.1007",
      /host bits set; use 10.9.0.0\/24/,
    );
    await expectApiError(byCidr({ networkCidr: "10.9.0.0/31" }), "SYS.1007", /prefix/);
    await expectApiError(byCidr({ networkCidr: "10.9.0.0/33" }), "SYS.1007", /networkCidr/);

    const l3b = await create(admin, "createL3Network", { name: "b", l2NetworkUuid: l2.uuid });
    await expectApiError(
      create(
        admin,
        "addIpRangeByNetworkCidr",
        { name: "c", networkCidr: "10.1.0.0/24" },
        { l3NetworkUuid: l3b.uuid },
      ),
      "SYS.1007",
      /overlaps range/,
    );
    const last = await create(
      admin,
      "addIpRangeByNetworkCidr",
      { name: "c", networkCidr: "10.3.0.0/24", gateway: "10.3.0.254" },
      { l3NetworkUuid: l3b.uuid },
    );
    expect(last).toMatchObject({ startIp: "10.3.0.1", endIp: "10.3.0.253", gateway: "10.3.0.254" });

    const queried = await admin.call<{ inventories: Inventory[] }>("queryIpRange", {
      query: { q: `l3NetworkUuid=${l3.uuid}` },
    });
    expect(queried.inventories).toHaveLength(2);
  });

  it("adds DNS and network services, rejecting unknown providers and lone Userdata", async () => {
    const l3 = await l3WithRange("10.30.0.0/24");
    const path = { l3NetworkUuid: l3.uuid };
    await create(admin, "addDnsToL3Network", { dns: "10.30.0.1" }, path);
    await expectApiError(
      create(admin, "addDnsToL3Network", { dns: "10.30.0.1" }, path),
      "SYS.1007",
      /already has/,
    );
    await expectApiError(
      create(
        admin,
        "attachNetworkServiceToL3Network",
        { networkServices: { [FLAT]: ["Userdata"] } },
        path,
      ),
      "SYS.1007",
      /Userdata needs DHCP/,
    );
    await expectApiError(
      create(
        admin,
        "attachNetworkServiceToL3Network",
        { networkServices: { [FLAT]: ["Eip"] } },
        path,
      ),
      "SYS.1007",
      /not Eip/,
    );
    await expectApiError(
      create(
        admin,
        "attachNetworkServiceToL3Network",
        { networkServices: { [newUuid()]: ["DHCP"] } },
        path,
      ),
      "SYS.1007",
      /no network service provider/,
    );
    const updated = await create(
      admin,
      "attachNetworkServiceToL3Network",
      { networkServices: { [FLAT]: ["DHCP", "DNS", "Userdata", "SNAT"] } },
      path,
    );
    expect(updated.dns).toEqual(["10.30.0.1"]);
    expect((updated.networkServices as unknown[]).length).toBe(4);

    const providers = await admin.call<{ inventories: Inventory[] }>("queryNetworkServiceProvider");
    const flat = providers.inventories.find((provider) => provider.uuid === FLAT)!;
    expect(flat.networkServiceTypes).toEqual(["DHCP", "DNS", "Userdata", "SNAT"]);
    expect(flat.attachedL2NetworkUuids).toEqual([l3.l2NetworkUuid]);
  });

  it("allocates the first free address, static ones, and returns them on delete", async () => {
    const l3 = await l3WithRange("10.40.0.0/29");
    const a = await allocate(l3.uuid);
    const b = await allocate(l3.uuid);
    expect([a.nic.ip, b.nic.ip]).toEqual(["10.40.0.2", "10.40.0.3"]);
    expect(a.nic).toMatchObject({ netmask: "255.255.255.248", gateway: "10.40.0.1", deviceId: 0 });
    expect(a.nic.mac).toMatch(/^fa(:[0-9a-f]{2}){5}$/);
    expect(a.nic.internalName).toBe(`tap${String(a.nic.uuid).slice(0, 12)}`);

    const fixed = await allocate(l3.uuid, "10.40.0.6");
    expect(fixed.nic.ip).toBe("10.40.0.6");
    await expectApiError(
      allocate(l3.uuid, "10.40.0.6").then(() => undefined),
      "SYS.1007",
      /10.40.0.6 is already used/,
    );
    await expectApiError(allocate(l3.uuid, "10.40.1.6"), "SYS.1007", /not in any IP range/);

    const capacity = await admin.call<Record<string, number>>("getIpAddressCapacity", {
      query: { l3NetworkUuids: l3.uuid },
    });
    expect(capacity).toMatchObject({
      totalCapacity: 5,
      usedIpAddressNumber: 3,
      availableCapacity: 2,
    });

    await nics.deleteNics(a.vmUuid);
    expect((await allocate(l3.uuid)).nic.ip).toBe("10.40.0.2");
    expect((await allocate(l3.uuid)).nic.ip).toBe("10.40.0.4");
    expect((await allocate(l3.uuid)).nic.ip).toBe("10.40.0.5");
    await expectApiError(allocate(l3.uuid), "SYS.1006", /no free IP address left/);

    const statistic = await admin.call<{ total: number }>("getL3NetworkIpStatistic", {
      path: { l3NetworkUuid: l3.uuid },
    });
    expect(statistic.total).toBe(5);
    await expectApiError(
      admin.call("deleteL3Network", { path: { uuid: l3.uuid } }),
      "SYS.1013",
      /delete the VM's NIC first/,
    );
  });

  it("hides other accounts' VMs in IP statistics", async () => {
    const l3 = await l3WithRange("10.60.0.0/24");
    const tenants: Array<{ client: TstackClient; accountUuid: string }> = [];

    for (const name of ["ipstat-a", "ipstat-b"]) {
      const account = await create(admin, "createAccount", {
        name,
        password: sha512Hex(`${name}-pw`),
      });
      const client = t.client();
      await client.logInByAccount(name, `${name}-pw`);
      tenants.push({ client, accountUuid: account.uuid });
    }

    const [own, other] = tenants as [(typeof tenants)[0], (typeof tenants)[0]];
    const ownNic = await allocate(l3.uuid, "10.60.0.10", own.accountUuid);
    const otherNic = await allocate(l3.uuid, "10.60.0.11", other.accountUuid);
    type Statistic = { ip: string; vmInstanceUuid: string | null; vmNicUuid: string | null };
    const statistics = async (client: TstackClient) => {
      const reply = await client.call<{ ipStatistics: Statistic[] }>("getL3NetworkIpStatistic", {
        path: { l3NetworkUuid: l3.uuid },
      });
      return new Map(reply.ipStatistics.map((row) => [row.ip, row]));
    };

    const seen = await statistics(own.client);
    expect(seen.get("10.60.0.10")?.vmInstanceUuid).toBe(ownNic.vmUuid);
    expect(seen.get("10.60.0.10")?.vmNicUuid).toBe(ownNic.nic.uuid);
    expect(seen.get("10.60.0.11")?.vmInstanceUuid).toBeNull();
    expect(seen.get("10.60.0.11")?.vmNicUuid).toBeNull();

    const all = await statistics(admin);
    expect(all.get("10.60.0.11")?.vmInstanceUuid).toBe(otherNic.vmUuid);
  });

  it("allocates random addresses when the L3 network's tag asks for it", async () => {
    const l3 = await l3WithRange("10.50.0.0/16", [
      "ipAllocationStrategy::RandomIpAllocatorStrategy",
    ]);
    const ips = [];

    for (let i = 0; i < 4; i++) {
      ips.push((await allocate(l3.uuid)).nic.ip);
    }

    expect(new Set(ips).size).toBe(4);
    // Four first-available picks would be exactly .0.2 to .0.5; random ones almost surely are not.
    expect(ips).not.toEqual(["10.50.0.2", "10.50.0.3", "10.50.0.4", "10.50.0.5"]);
  });

  it("fills ranges in order and a gap in the second", async () => {
    const l2 = await create(admin, "createL2NoVlanNetwork", { name: "l2", zoneUuid: zone.uuid });
    const l3 = await create(admin, "createL3Network", { name: "l3", l2NetworkUuid: l2.uuid });
    const path = { l3NetworkUuid: l3.uuid };
    const base = { name: "r", netmask: "255.255.255.0", gateway: "10.70.0.1" };
    await create(
      admin,
      "addIpRange",
      { ...base, startIp: "10.70.0.20", endIp: "10.70.0.22" },
      path,
    );
    await create(
      admin,
      "addIpRange",
      { ...base, startIp: "10.70.0.10", endIp: "10.70.0.11" },
      path,
    );

    const first = [];

    for (let i = 0; i < 4; i++) {
      first.push(await allocate(l3.uuid));
    }

    expect(first.map((result) => result.nic.ip)).toEqual([
      "10.70.0.10",
      "10.70.0.11",
      "10.70.0.20",
      "10.70.0.21",
    ]);

    await allocate(l3.uuid, "10.70.0.22");
    await nics.deleteNics(first[2]!.vmUuid);
    expect((await allocate(l3.uuid)).nic.ip).toBe("10.70.0.20");
    await expectApiError(allocate(l3.uuid), "SYS.1006", /no free IP address left/);
  });

  it("fills a small range with random addresses", async () => {
    const l3 = await l3WithRange("10.80.0.0/29", [
      "ipAllocationStrategy::RandomIpAllocatorStrategy",
    ]);
    const ips = [];

    for (let i = 0; i < 5; i++) {
      ips.push((await allocate(l3.uuid)).nic.ip);
    }

    expect([...ips].sort()).toEqual([
      "10.80.0.2",
      "10.80.0.3",
      "10.80.0.4",
      "10.80.0.5",
      "10.80.0.6",
    ]);
    await expectApiError(allocate(l3.uuid), "SYS.1006", /no free IP address left/);
  });

  it("never hands one address to two of 50 concurrent allocations", async () => {
    const l3 = await l3WithRange("10.60.0.0/24");
    const results = await Promise.all(Array.from({ length: 50 }, () => allocate(l3.uuid)));
    const ips = results.map((result) => result.nic.ip);
    const macs = results.map((result) => result.nic.mac);
    expect(new Set(ips).size).toBe(50);
    expect(new Set(macs).size).toBe(50);
  });
});
