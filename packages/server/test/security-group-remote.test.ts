import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simulatorLink } from "../src/simulator/link.js";
import { dialects, startTestServer, type TestServer } from "./harness.js";
import { buildSimulatorCloud, type SimulatorCloud } from "./simulator-cloud.js";

type Inventory = { uuid: string } & Record<string, unknown>;

const SG_PROVIDER = "536fa586acb4ee94e96aa6fec701c94e";

describe.each(dialects)("security group remote sets on %s", (dialect) => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: SimulatorCloud;
  let groupUuid: string;

  const call = async (api: string, params: object, path?: Record<string, string>) =>
    (
      await admin.call<{ inventory: Inventory }>(api, {
        params: params as Record<string, unknown>,
        path,
      })
    ).inventory;

  /** Returns the group's member addresses from the last apply the simulated host received. */
  const membersOnHost = async (hostUuid: string) => {
    const { control } = await simulatorLink(t.server.core);
    const [state] = await control.state(hostUuid);
    return [...(state?.remoteGroups?.[groupUuid] ?? [])].sort();
  };

  /** Creates a VM on a host, adds its NIC to the group and returns the VM and its address. */
  const member = async (name: string, hostUuid: string) => {
    const vm = await call("createVmInstance", {
      name,
      imageUuid: cloud.imageUuid,
      instanceOfferingUuid: cloud.instanceOfferingUuid,
      l3NetworkUuids: [cloud.l3NetworkUuid],
      hostUuid,
    });
    const [nic] = (
      await admin.query<Inventory & { ip: string }>("queryVmNic", [`vmInstanceUuid=${vm.uuid}`])
    ).inventories;
    await call(
      "addVmNicToSecurityGroup",
      { vmNicUuids: [nic!.uuid] },
      { securityGroupUuid: groupUuid },
    );
    return { vmUuid: vm.uuid, ip: nic!.ip };
  };

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = t.admin;
    cloud = await buildSimulatorCloud(admin, { hosts: 2, cidr: "10.64.0.0/22", prefix: "tsgm" });
    await call(
      "attachNetworkServiceToL3Network",
      { networkServices: { [SG_PROVIDER]: ["SecurityGroup"] } },
      { l3NetworkUuid: cloud.l3NetworkUuid },
    );
    groupUuid = (await call("createSecurityGroup", { name: "peers" })).uuid;
    await call(
      "attachSecurityGroupToL3Network",
      {},
      { securityGroupUuid: groupUuid, l3NetworkUuid: cloud.l3NetworkUuid },
    );
    await call(
      "addSecurityGroupRule",
      { rules: [{ type: "Ingress", protocol: "ALL", remoteSecurityGroupUuid: groupUuid }] },
      { securityGroupUuid: groupUuid },
    );
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("drops an expunged member from other hosts", async () => {
    const [first, second] = cloud.hostUuids;
    const staying = await member("tsgm-staying", first!);
    const leaving = await member("tsgm-leaving", second!);
    expect(await membersOnHost(first!)).toEqual([leaving.ip, staying.ip].sort());

    await call("destroyVmInstance", {}, { uuid: leaving.vmUuid });
    await admin.call("expungeVmInstance", { path: { uuid: leaving.vmUuid }, params: {} });

    expect(await membersOnHost(first!)).toEqual([staying.ip]);
  });
});
