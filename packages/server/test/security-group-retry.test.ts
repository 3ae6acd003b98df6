import type { TstackClient } from "@tstack/sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { agentTarget } from "../src/compute/hosts/connect.js";
import { pushRetriesOf } from "../src/network/security-groups-failures.js";
import { simulatorLink } from "../src/simulator/link.js";
import { dialects, startTestServer, type TestServer, until } from "./harness.js";
import { buildSimulatorCloud, type SimulatorCloud } from "./simulator-cloud.js";

type Inventory = { uuid: string } & Record<string, unknown>;
type Host = Inventory & {
  securityGroupPushError: string | null;
  securityGroupPushAttempts: number;
};
type Rule = { direction: string; protocol: string; startPort?: number };

const SG_PROVIDER = "536fa586acb4ee94e96aa6fec701c94e";
const APPLY = "/network/securitygroup/apply";
const INJECTED = "injected nft failure";

/** Generous, because the shared test machine can be slow; no timing is asserted. */
const DEADLINE_MS = 90_000;

describe.each(dialects)("security group push retries on %s", (dialect) => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: SimulatorCloud;
  let groupUuid: string;
  const nics: string[] = [];

  const call = async (api: string, params: object, path?: Record<string, string>) =>
    (
      await admin.call<{ inventory: Inventory }>(api, {
        params: params as Record<string, unknown>,
        path,
      })
    ).inventory;

  const hostOf = async (uuid: string) =>
    (await admin.query<Host>("queryHost", [`uuid=${uuid}`])).inventories[0]!;

  /** The rules the simulated host last took for a NIC, or undefined if it has none. */
  const rulesOnHost = async (hostUuid: string, nicUuid: string) => {
    const { control } = await simulatorLink(t.server.core);
    const [state] = await control.state(hostUuid);
    return state?.securityGroupRules?.[nicUuid] as Rule[] | undefined;
  };

  const addRule = (protocol: string, port: number) =>
    call(
      "addSecurityGroupRule",
      { rules: [{ type: "Ingress", protocol, startPort: port, endPort: port }] },
      { securityGroupUuid: groupUuid },
    );

  const failApplyOn = (hostUuid: string) =>
    call("createSimulatorFault", {
      path: APPLY,
      resourceUuid: hostUuid,
      kind: "fail",
      errorText: INJECTED,
    });

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = t.admin;
    cloud = await buildSimulatorCloud(admin, { hosts: 2, cidr: "10.63.0.0/22", prefix: "tsgr" });
    await call(
      "attachNetworkServiceToL3Network",
      { networkServices: { [SG_PROVIDER]: ["SecurityGroup"] } },
      { l3NetworkUuid: cloud.l3NetworkUuid },
    );
    groupUuid = (await call("createSecurityGroup", { name: "retry" })).uuid;
    await call(
      "attachSecurityGroupToL3Network",
      {},
      { securityGroupUuid: groupUuid, l3NetworkUuid: cloud.l3NetworkUuid },
    );

    for (const [index, hostUuid] of cloud.hostUuids.entries()) {
      const vm = await call("createVmInstance", {
        name: `tsgr-vm${index}`,
        imageUuid: cloud.imageUuid,
        instanceOfferingUuid: cloud.instanceOfferingUuid,
        l3NetworkUuids: [cloud.l3NetworkUuid],
        hostUuid,
      });
      const reply = await admin.query<Inventory>("queryVmNic", [`vmInstanceUuid=${vm.uuid}`]);
      nics.push(reply.inventories[0]!.uuid);
    }

    await call("addVmNicToSecurityGroup", { vmNicUuids: nics }, { securityGroupUuid: groupUuid });
  });

  afterEach(async () => {
    await admin.call("deleteAllSimulatorFaults", {});
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("retries a failed push until the host takes the newest rules", async () => {
    const [failing, healthy] = cloud.hostUuids as [string, string];
    await failApplyOn(failing);

    await addRule("TCP", 22);

    const marked = await hostOf(failing);
    expect(marked.securityGroupPushError).toContain(INJECTED);
    expect(marked.securityGroupPushAttempts).toBeGreaterThanOrEqual(1);
    expect((await hostOf(healthy)).securityGroupPushError).toBeNull();
    expect((await rulesOnHost(healthy, nics[1]!))?.map((rule) => rule.startPort)).toEqual([22]);
    expect(await rulesOnHost(failing, nics[0]!)).toEqual([]);

    await until(
      () => hostOf(failing),
      (host) => host.securityGroupPushAttempts >= 2,
      "a background retry of the failed push",
      DEADLINE_MS,
    );
    await addRule("TCP", 80);
    await admin.call("deleteAllSimulatorFaults", {});

    const cleared = await until(
      () => hostOf(failing),
      (host) => host.securityGroupPushError === null,
      "the failure mark to clear",
      DEADLINE_MS,
    );
    expect(cleared.securityGroupPushAttempts).toBe(0);
    const rules = await rulesOnHost(failing, nics[0]!);
    expect(rules?.map((rule) => rule.startPort)).toEqual([22, 80]);
    expect(pushRetriesOf(t.server.core)?.pendingHosts()).not.toContain(failing);
  });

  it("pushes the rules again when a host reconnects", async () => {
    const hostUuid = cloud.hostUuids[0]!;
    const expected = (await rulesOnHost(hostUuid, nics[0]!))?.map((rule) => rule.startPort);
    // Stands in for a host that lost its rules, such as one that rebooted.
    const target = await agentTarget(t.server.core, hostUuid);
    await t.server.core.agents.call(target, "/network/securitygroup/remove", {
      nicUuids: [nics[0]],
    });
    expect(await rulesOnHost(hostUuid, nics[0]!)).toBeUndefined();

    await admin.call("reconnectHost", { path: { uuid: hostUuid }, params: {} });

    const rules = await rulesOnHost(hostUuid, nics[0]!);
    expect(rules?.map((rule) => rule.startPort)).toEqual(expected);
    expect(expected).toHaveLength(2);
  });

  it("drops the retry of a deleted host", async () => {
    const hostUuid = cloud.hostUuids[1]!;
    await failApplyOn(hostUuid);
    await addRule("UDP", 53);
    expect((await hostOf(hostUuid)).securityGroupPushError).toContain(INJECTED);

    await admin.call("deleteHost", {
      path: { uuid: hostUuid },
      query: { deleteMode: "Enforcing" },
    });

    const rows = await t.server.core.kysely
      .selectFrom("securityGroupFailureHosts")
      .selectAll()
      .where("hostUuid", "=", hostUuid)
      .execute();
    expect(rows).toEqual([]);
    expect(pushRetriesOf(t.server.core)?.pendingHosts()).not.toContain(hostUuid);
  });
});
