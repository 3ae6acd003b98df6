import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newUuid, now } from "../src/core/ids.js";
import type { AgentTarget } from "../src/drivers/agent-client.js";
import { dialects, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

const VTEP_CIDR = "10.9.0.0/24";
const VNI = 3100;

/**
 * VTEPs of simulator hosts as hosts join and leave a cluster with an attached VXLAN pool. The
 * agent client is wrapped, so each host reports its own VTEP and the test records the peer lists
 * sent to hosts. Every other command goes to the simulator.
 */
describe.each(dialects)("VXLAN peers of joining hosts on %s", (dialect) => {
  let t: TestServer;
  let admin: TstackClient;
  const vteps = new Map<string, string>();
  const syncs: { hostUuid: string; body: unknown }[] = [];

  const create = async (api: string, params: object, path?: object) =>
    (
      await admin.call<{ inventory: Inventory }>(api, {
        params: params as Record<string, unknown>,
        path: path as Record<string, string>,
      })
    ).inventory;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = t.admin;
    const agents = t.server.core.agents;
    const call = agents.call.bind(agents);
    agents.call = (async (target: AgentTarget, path: string, body: unknown, timeoutMs?: number) => {
      if (path === "/network/l2/check") {
        if (!vteps.has(target.hostUuid)) {
          vteps.set(target.hostUuid, `10.9.0.${vteps.size + 1}`);
        }

        return { vtepIp: vteps.get(target.hostUuid) };
      }

      if (path === "/network/vxlan/peers/sync") {
        syncs.push({ hostUuid: target.hostUuid, body });
        return {};
      }

      return call(target, path, body, timeoutMs);
    }) as typeof agents.call;
  });

  afterAll(async () => {
    await t?.stop();
  });

  it.each(["pool", "network"] as const)("syncs peers with the %s attached", async (attach) => {
    syncs.length = 0;
    const zone = await create("createZone", { name: "z" });
    const cluster = await create("createCluster", {
      zoneUuid: zone.uuid,
      name: "sim",
      hypervisorType: "Simulator",
    });
    const addHost = (name: string) =>
      create("addSimulatorHost", {
        name,
        managementIp: name,
        clusterUuid: cluster.uuid,
        cpuCapacity: 4,
        memoryCapacity: 8 * 1024 ** 3,
      });
    const first = await addHost(`tvp-${dialect}-${attach}-a`);

    const pool = await create("createL2VxlanNetworkPool", {
      name: "pool",
      zoneUuid: zone.uuid,
      vtepCidr: VTEP_CIDR,
    });
    await create(
      "createVniRange",
      { name: "r", startVni: VNI, endVni: VNI },
      {
        l2NetworkUuid: pool.uuid,
      },
    );
    const vxlan = await create("createL2VxlanNetwork", {
      name: "vx",
      zoneUuid: zone.uuid,
      poolUuid: pool.uuid,
    });
    await admin.call("attachL2NetworkToCluster", {
      path: {
        l2NetworkUuid: attach === "pool" ? pool.uuid : vxlan.uuid,
        clusterUuid: cluster.uuid,
      },
    });

    // A NIC on the VXLAN network is prepared on the first host, so that host has the device.
    await t.server.core.kysely
      .insertInto("vmNicHostRefs")
      .values({
        nicUuid: newUuid(),
        hostUuid: first.uuid,
        vmInstanceUuid: newUuid(),
        mac: "fa:00:00:00:00:01",
        ip: "10.30.0.2",
        l3NetworkUuid: newUuid(),
        l2NetworkUuid: vxlan.uuid,
        createDate: now(),
      })
      .execute();
    expect(syncs).toEqual([]);

    const second = await addHost(`tvp-${dialect}-${attach}-b`);
    const [firstVtep, secondVtep] = [vteps.get(first.uuid), vteps.get(second.uuid)];
    const recorded = await t.server.core.kysely
      .selectFrom("vteps")
      .select(["hostUuid", "vtepIp"])
      .where("poolUuid", "=", pool.uuid)
      .orderBy("vtepIp")
      .execute();
    expect(recorded).toEqual([
      { hostUuid: first.uuid, vtepIp: firstVtep },
      { hostUuid: second.uuid, vtepIp: secondVtep },
    ]);
    expect(syncs).toEqual([
      {
        hostUuid: first.uuid,
        body: { vni: VNI, vtepCidr: VTEP_CIDR, peerVteps: [firstVtep, secondVtep] },
      },
    ]);

    await admin.call("deleteHost", { path: { uuid: second.uuid } });
    const left = await t.server.core.kysely
      .selectFrom("vteps")
      .select("hostUuid")
      .where("poolUuid", "=", pool.uuid)
      .execute();
    expect(left).toEqual([{ hostUuid: first.uuid }]);
    expect(syncs.at(-1)).toEqual({
      hostUuid: first.uuid,
      body: { vni: VNI, vtepCidr: VTEP_CIDR, peerVteps: [firstVtep] },
    });
  });
});
