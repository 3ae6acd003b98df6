import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { sha512Hex } from "@tstack/api";
import { ApiRequestError, type TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newUuid } from "../src/core/ids.js";
import { buildCloud } from "./cloud.js";
import { dialects, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };
type Group = Inventory & { rules: Inventory[]; vmNicUuids: string[] };

const FLAT = "f1b7a78b680fb97d45b686eac3a16d98";
const SG_PROVIDER = "536fa586acb4ee94e96aa6fec701c94e";

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

async function create(client: TstackClient, api: string, params: object, path?: object) {
  const reply = await client.call<{ inventory: Inventory }>(api, {
    params: params as Record<string, unknown>,
    path: path as Record<string, string>,
  });
  return reply.inventory;
}

const addRules = (client: TstackClient, groupUuid: string, rules: object[]) =>
  create(
    client,
    "addSecurityGroupRule",
    { rules },
    { securityGroupUuid: groupUuid },
  ) as Promise<Group>;

describe.each(dialects)("security group API on %s", (dialect) => {
  let t: TestServer;
  let admin: TstackClient;
  let tenant: TstackClient;
  let other: TstackClient;
  let tenantAccount: Inventory;
  let l3: Inventory;
  let bareL3: Inventory;

  async function makeL3(name: string, cidr: string, services: string[]) {
    const zone = await create(admin, "createZone", { name: `z-${name}` });
    const l2 = await create(admin, "createL2NoVlanNetwork", { name, zoneUuid: zone.uuid });
    const made = await create(admin, "createL3Network", { name, l2NetworkUuid: l2.uuid });
    await create(
      admin,
      "addIpRangeByNetworkCidr",
      { name, networkCidr: cidr },
      {
        l3NetworkUuid: made.uuid,
      },
    );

    if (services.length > 0) {
      await create(
        admin,
        "attachNetworkServiceToL3Network",
        { networkServices: { [SG_PROVIDER]: services } },
        { l3NetworkUuid: made.uuid },
      );
    }

    return made;
  }

  async function nicOn(l3Uuid: string, accountUuid: string) {
    const vmUuid = newUuid();
    await t.server.core.transact((tx) =>
      t.server.core.services.nics!.allocateNics(tx, {
        vmUuid,
        accountUuid,
        l3NetworkUuids: [l3Uuid],
        staticIps: {},
      }),
    );
    const reply = await admin.query<Inventory>("queryVmNic", [`vmInstanceUuid=${vmUuid}`]);
    return reply.inventories[0]!;
  }

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = t.admin;

    for (const name of ["tsg-a", "tsg-b"]) {
      const account = await create(admin, "createAccount", {
        name,
        password: sha512Hex(`${name}-pw`),
      });
      tenantAccount ??= account;
    }

    tenant = t.client();
    await tenant.logInByAccount("tsg-a", "tsg-a-pw");
    other = t.client();
    await other.logInByAccount("tsg-b", "tsg-b-pw");
    l3 = await makeL3("sg", "10.61.0.0/24", ["SecurityGroup"]);
    bareL3 = await makeL3("bare", "10.62.0.0/24", []);
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("keeps each tenant's groups to itself", async () => {
    const mine = await create(tenant, "createSecurityGroup", { name: "web" });
    expect(mine).toMatchObject({ name: "web", state: "Enabled", rules: [], vmNicUuids: [] });
    const theirs = await create(other, "createSecurityGroup", { name: "db" });

    const seen = await tenant.query<Inventory>("querySecurityGroup");
    expect(seen.inventories.map((group) => group.uuid)).toEqual([mine.uuid]);
    await expectApiError(
      tenant.call("deleteSecurityGroup", { path: { uuid: theirs.uuid } }),
      "ID.1002",
      /belongs to another account/,
    );
    await expectApiError(
      addRules(tenant, mine.uuid, [
        { type: "Ingress", protocol: "TCP", remoteSecurityGroupUuid: theirs.uuid },
      ]),
      "SYS.1007",
      /params.rules\[0\].remoteSecurityGroupUuid: .* belongs to another account/,
    );
  });

  it("rejects bad rules, naming the field", async () => {
    const group = await create(tenant, "createSecurityGroup", { name: "strict" });
    const cases: Array<[object, RegExp]> = [
      [{ type: "Ingress", protocol: "TCP", startPort: 0 }, /startPort/],
      [{ type: "Ingress", protocol: "TCP", startPort: 65536 }, /startPort/],
      [{ type: "Ingress", protocol: "TCP", startPort: 90, endPort: 80 }, /90 is above endPort 80/],
      [{ type: "Ingress", protocol: "UDP", endPort: 80 }, /needs a startPort/],
      [{ type: "Ingress", protocol: "ICMP", startPort: 1 }, /only to TCP and UDP/],
      [{ type: "Egress", protocol: "ALL", endPort: 10 }, /only to TCP and UDP/],
      [{ type: "Ingress", protocol: "TCP", allowedCidr: "10.0.0.0/33" }, /allowedCidr/],
      [{ type: "Ingress", protocol: "TCP", allowedCidr: "10.0.0.5/24" }, /host bits/],
      [{ type: "Ingress", protocol: "GRE" }, /protocol/],
      [{ type: "Inbound", protocol: "TCP" }, /type/],
      [
        { type: "Ingress", protocol: "TCP", remoteSecurityGroupUuid: newUuid() },
        /remoteSecurityGroupUuid: security group [0-9a-f]{32} was not found/,
      ],
      [
        {
          type: "Ingress",
          protocol: "TCP",
          allowedCidr: "10.0.0.0/8",
          remoteSecurityGroupUuid: group.uuid,
        },
        /not both/,
      ],
    ];

    for (const [rule, message] of cases) {
      await expectApiError(addRules(tenant, group.uuid, [rule]), "SYS.1007", message);
    }

    const after = await addRules(tenant, group.uuid, [
      { type: "Ingress", protocol: "TCP", startPort: 22 },
      { type: "Ingress", protocol: "ICMP", remoteSecurityGroupUuid: group.uuid },
      { type: "Egress", protocol: "UDP", startPort: 53, endPort: 53, allowedCidr: "10.0.0.0/8" },
    ]);
    expect(after.rules).toMatchObject([
      { type: "Ingress", protocol: "TCP", startPort: 22, endPort: 22, allowedCidr: null },
      { type: "Ingress", protocol: "ICMP", startPort: null, remoteSecurityGroupUuid: group.uuid },
      { type: "Egress", protocol: "UDP", startPort: 53, allowedCidr: "10.0.0.0/8" },
    ]);

    const rules = await tenant.query<Inventory>("querySecurityGroupRule", [
      `securityGroupUuid=${group.uuid}`,
    ]);
    expect(rules.inventories).toHaveLength(3);
    expect((await other.query("querySecurityGroupRule")).inventories).toEqual([]);
    await expectApiError(
      other.call("deleteSecurityGroupRule", { query: { ruleUuids: rules.inventories[0]!.uuid } }),
      "ID.1002",
    );

    await tenant.call("deleteSecurityGroupRule", {
      query: { ruleUuids: rules.inventories.map((rule) => rule.uuid).join(",") },
    });
    expect((await tenant.query("querySecurityGroupRule")).inventories).toHaveLength(0);
  });

  it("takes NICs only from attached L3 networks", async () => {
    const group = await create(tenant, "createSecurityGroup", { name: "nics" });
    await expectApiError(
      create(
        tenant,
        "attachSecurityGroupToL3Network",
        {},
        {
          securityGroupUuid: group.uuid,
          l3NetworkUuid: bareL3.uuid,
        },
      ),
      "SYS.1007",
      /has no SecurityGroup network service/,
    );

    const nic = await nicOn(l3.uuid, tenantAccount.uuid);
    const foreign = await nicOn(l3.uuid, newUuid());
    await expectApiError(
      create(
        tenant,
        "addVmNicToSecurityGroup",
        { vmNicUuids: [nic.uuid] },
        {
          securityGroupUuid: group.uuid,
        },
      ),
      "SYS.1007",
      /which security group .* is not attached to/,
    );

    const attached = await create(
      tenant,
      "attachSecurityGroupToL3Network",
      {},
      {
        securityGroupUuid: group.uuid,
        l3NetworkUuid: l3.uuid,
      },
    );
    expect(attached.attachedL3NetworkUuids).toEqual([l3.uuid]);
    await expectApiError(
      create(
        tenant,
        "addVmNicToSecurityGroup",
        { vmNicUuids: [foreign.uuid] },
        {
          securityGroupUuid: group.uuid,
        },
      ),
      "SYS.1007",
      /belongs to another account/,
    );

    const joined = (await create(
      tenant,
      "addVmNicToSecurityGroup",
      { vmNicUuids: [nic.uuid] },
      {
        securityGroupUuid: group.uuid,
      },
    )) as Group;
    expect(joined.vmNicUuids).toEqual([nic.uuid]);

    await tenant.call("deleteVmNicFromSecurityGroup", {
      path: { securityGroupUuid: group.uuid },
      query: { vmNicUuids: nic.uuid },
    });
    await create(
      tenant,
      "addVmNicToSecurityGroup",
      { vmNicUuids: [nic.uuid] },
      {
        securityGroupUuid: group.uuid,
      },
    );
    await tenant.call("detachSecurityGroupFromL3Network", {
      path: { securityGroupUuid: group.uuid, l3NetworkUuid: l3.uuid },
    });
    const [left] = (await tenant.query<Group>("querySecurityGroup", [`uuid=${group.uuid}`]))
      .inventories;
    expect(left).toMatchObject({ attachedL3NetworkUuids: [], vmNicUuids: [] });

    await tenant.call("deleteSecurityGroup", { path: { uuid: group.uuid } });
    expect((await tenant.query("querySecurityGroup", [`uuid=${group.uuid}`])).inventories).toEqual(
      [],
    );
  });
});

/** Namespace prefix of this file's agent, so its security-group table is its own: `tsg_sg`. */
const PREFIX = "tsg-";

/** Lists the host's security-group table, or returns "" when it does not exist. */
function sgTable() {
  try {
    return execFileSync("nft", ["list", "table", "bridge", "tsg_sg"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch {
    return "";
  }
}

function qemuPids(vmUuids: string[]) {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
        return cmdline.includes("qemu-system") && vmUuids.some((uuid) => cmdline.includes(uuid));
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe("security groups on the local host", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;
  const vms: Inventory[] = [];

  beforeAll(async () => {
    // The agent inherits this and names its namespaces and nftables tables after it.
    process.env.TSTACK_AGENT_NETNS_PREFIX = PREFIX;
    t = await startTestServer("sqlite");
    admin = t.admin;
    cloud = await buildCloud(t, "172.30.86.0/24");
    await create(
      admin,
      "attachNetworkServiceToL3Network",
      { networkServices: { [SG_PROVIDER]: ["SecurityGroup"], [FLAT]: ["DHCP"] } },
      { l3NetworkUuid: cloud.l3NetworkUuid },
    );
  }, 300_000);

  afterAll(async () => {
    for (const pid of qemuPids(vms.map((vm) => vm.uuid))) {
      process.kill(pid, "SIGKILL");
    }

    await cloud?.cleanup();
    await t?.stop();
  });

  const consoleLog = async (vmUuid: string) =>
    (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid: vmUuid } })).console;

  /** Waits for `result` on the pinging VM's console after `offset`; returns the log length. */
  async function pingResult(vmUuid: string, result: "ok" | "fail", offset: number) {
    const deadline = Date.now() + 240_000;

    while (Date.now() < deadline) {
      const log = await consoleLog(vmUuid);

      if (log.slice(offset).includes(`TSG-PING ${result}`)) {
        return log.length;
      }

      await new Promise((resolve) => setTimeout(resolve, 1000));
    }

    throw new Error(`no 'TSG-PING ${result}' after offset ${offset} of ${vmUuid}'s console`);
  }

  it("filters traffic between two VMs and loads each change into the host's table", async () => {
    const ips = ["172.30.86.50", "172.30.86.51"];
    // The guest runs user data as a script: the first VM pings the second once a second.
    const pinger = [
      "#!/bin/sh",
      "(while true; do",
      `  if ping -c 1 -W 1 ${ips[1]} >/dev/null 2>&1; then r=ok; else r=fail; fi`,
      '  echo "TSG-PING $r" >/dev/console',
      "  sleep 1",
      "done) </dev/null >/dev/null 2>&1 &",
      "",
    ].join("\n");

    for (const [index, ip] of ips.entries()) {
      const userdata = index === 0 ? [`userdata::${Buffer.from(pinger).toString("base64")}`] : [];
      const reply = await admin.call<{ inventory: Inventory }>("createVmInstance", {
        params: {
          name: `tsg-vm${index + 1}`,
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
        systemTags: [`staticIp::${cloud.l3NetworkUuid}::${ip}`, ...userdata],
      });
      vms.push(reply.inventory);
    }

    const pingerUuid = vms[0]!.uuid;
    let seen = await pingResult(pingerUuid, "ok", 0);

    const nics = (
      await admin.query<Inventory>("queryVmNic", [
        `vmInstanceUuid?=${vms.map((vm) => vm.uuid).join(",")}`,
      ])
    ).inventories;
    expect(nics.map((nic) => nic.ip).sort()).toEqual(ips);
    const taps = nics.map((nic) => `tap${nic.uuid.slice(0, 12)}`);

    const group = await create(admin, "createSecurityGroup", { name: "tsg-peers" });
    await create(
      admin,
      "attachSecurityGroupToL3Network",
      {},
      {
        securityGroupUuid: group.uuid,
        l3NetworkUuid: cloud.l3NetworkUuid,
      },
    );
    await create(
      admin,
      "addVmNicToSecurityGroup",
      { vmNicUuids: nics.map((nic) => nic.uuid) },
      {
        securityGroupUuid: group.uuid,
      },
    );

    const before = sgTable();

    for (const tap of taps) {
      expect(before).toContain(`chain in_${tap}`);
      expect(before).toContain(`chain out_${tap}`);
    }

    expect(before).not.toContain("icmp");
    // Ingress is dropped by default, so the echo requests no longer reach the second VM.
    seen = await pingResult(pingerUuid, "fail", seen);

    await addRules(admin, group.uuid, [
      { type: "Ingress", protocol: "ICMP", remoteSecurityGroupUuid: group.uuid },
    ]);
    const after = sgTable();
    expect(after).not.toEqual(before);
    expect(after).toContain("icmp");

    for (const ip of ips) {
      expect(after).toContain(ip);
    }

    seen = await pingResult(pingerUuid, "ok", seen);

    // The NIC hooks: stopping a VM takes its chains off the host, starting it loads them again.
    const target = vms[1]!.uuid;
    await admin.call("stopVmInstance", { path: { uuid: target }, params: { type: "cold" } });
    expect(sgTable()).toContain(`chain in_${taps[0]}`);
    expect(sgTable()).not.toContain(`chain in_${taps[1]}`);
    await admin.call("startVmInstance", { path: { uuid: target }, params: {} });
    expect(sgTable()).toContain(`chain in_${taps[1]}`);

    await admin.call("deleteSecurityGroup", { path: { uuid: group.uuid } });
    expect(sgTable()).toBe("");
  }, 900_000);
});
