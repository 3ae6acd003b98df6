import type { Transaction } from "kysely";
import type { Core } from "../core/core.js";
import { newUuid, now } from "../core/ids.js";
import type { Database } from "../db/schema.js";
import {
  deleteMode,
  deleteResourceRow,
  insertResource,
  inventoryOf,
  loadResource,
  queryHandler,
  updateHandler,
} from "../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";
import { invalid, referenced } from "./checks.js";
import { ipToLong, prefixToLong } from "./ipv4.js";
import { nicsNamingGroups, pushSecurityGroups } from "./security-groups-push.js";

type Row = Record<string, unknown>;

interface RuleParam {
  type: "Ingress" | "Egress";
  protocol: "TCP" | "UDP" | "ICMP" | "ALL";
  startPort?: number;
  endPort?: number;
  allowedCidr?: string;
  remoteSecurityGroupUuid?: string;
  description?: string;
}

const groupUuidOf = (call: ApiCall) => call.path.securityGroupUuid ?? call.path.uuid!;

/**
 * Commits the database change, then pushes the new rule sets of the NICs it returns. A host that
 * fails the push does not fail the job: it is marked (`securityGroupPushError` in its inventory)
 * and retried in the background.
 */
async function changeAndPush(
  core: Core,
  call: ApiCall,
  change: () => Promise<string[]>,
  result: (tx: Transaction<Database>) => Promise<unknown>,
) {
  const nicUuids = await change();
  await pushSecurityGroups(core, nicUuids);
  return call.commit(result);
}

async function membersOf(core: Core, groupUuid: string) {
  const rows = await core.kysely
    .selectFrom("vmNicSecurityGroupRefs")
    .select("vmNicUuid")
    .where("securityGroupUuid", "=", groupUuid)
    .execute();
  return rows.map((row) => row.vmNicUuid);
}

function listParam(call: ApiCall, name: string) {
  const raw = call.query[name];
  const given = raw === undefined ? [] : [raw].flat();
  const values = given.flatMap((value) => value.split(",")).filter((value) => value !== "");

  if (values.length === 0) {
    invalid(name, `pass one or more uuids in the query string, such as ?${name}=<uuid>,<uuid>`);
  }

  for (const value of values) {
    if (!/^[0-9a-f]{32}$/.test(value)) {
      invalid(name, `'${value}' is not a uuid (32 lower-case hex digits)`);
    }
  }

  return [...new Set(values)];
}

/** Checks what the schema cannot see in one rule of `addSecurityGroupRule`. */
async function checkRule(core: Core, rule: RuleParam, field: string, owner: string) {
  const ported = rule.protocol === "TCP" || rule.protocol === "UDP";

  if (!ported && (rule.startPort !== undefined || rule.endPort !== undefined)) {
    invalid(field, `ports apply only to TCP and UDP rules, not ${rule.protocol}; leave them out`);
  }

  if (rule.startPort === undefined && rule.endPort !== undefined) {
    invalid(`${field}.startPort`, `endPort ${rule.endPort} needs a startPort`);
  }

  if (rule.endPort !== undefined && rule.startPort! > rule.endPort) {
    invalid(
      `${field}.startPort`,
      `startPort ${rule.startPort} is above endPort ${rule.endPort}; swap them`,
    );
  }

  if (rule.allowedCidr !== undefined && rule.remoteSecurityGroupUuid !== undefined) {
    invalid(field, "a rule takes allowedCidr or remoteSecurityGroupUuid, not both");
  }

  if (rule.allowedCidr !== undefined) {
    const [ip, prefix] = rule.allowedCidr.split("/") as [string, string];
    const mask = prefixToLong(Number(prefix));

    if ((ipToLong(ip) & mask) >>> 0 !== ipToLong(ip)) {
      invalid(
        `${field}.allowedCidr`,
        `${rule.allowedCidr} has host bits set; pass the network address of the /${prefix}`,
      );
    }
  }

  if (rule.remoteSecurityGroupUuid !== undefined) {
    const remote = await referenced(
      core.kysely,
      "securityGroups",
      rule.remoteSecurityGroupUuid,
      `${field}.remoteSecurityGroupUuid`,
      "security group",
    );

    if (remote.accountUuid !== owner) {
      invalid(
        `${field}.remoteSecurityGroupUuid`,
        `security group ${rule.remoteSecurityGroupUuid} belongs to another account; name one of your own groups`,
      );
    }
  }
}

const createSecurityGroup: ApiHandler = {
  run: (core, call) =>
    call.commit(async (tx) => {
      const row = await insertResource(
        tx,
        core,
        "SecurityGroup",
        {
          name: call.params.name,
          description: call.params.description ?? null,
          state: "Enabled",
          ipVersion: 4,
        },
        call,
      );
      return { inventory: await inventoryOf(tx, "SecurityGroup", String(row.uuid)) };
    }),
};

const deleteSecurityGroup: ApiHandler = {
  async check(core, call) {
    deleteMode(call);
    await loadResource(core.kysely, "SecurityGroup", call.path.uuid!, call.caller);
  },
  run: (core, call) =>
    changeAndPush(
      core,
      call,
      async () => {
        const uuid = call.path.uuid!;
        const affected = [
          ...(await membersOf(core, uuid)),
          ...(await nicsNamingGroups(core, [uuid])),
        ];
        await core.transact(async (tx) => {
          const group = await loadResource(tx, "SecurityGroup", uuid, call.caller);
          // Rules of other groups that name this one go too (cascade), as in ZStack.
          await deleteResourceRow(tx, "SecurityGroup", group);
        });
        return affected;
      },
      async () => ({}),
    ),
};

const addSecurityGroupRule: ApiHandler = {
  async check(core, call) {
    const group = await loadResource(core.kysely, "SecurityGroup", groupUuidOf(call), call.caller);
    const rules = call.params.rules as RuleParam[];

    for (const [index, rule] of rules.entries()) {
      await checkRule(core, rule, `params.rules[${index}]`, String(group.accountUuid));
    }
  },
  run: (core, call) =>
    changeAndPush(
      core,
      call,
      async () => {
        const uuid = groupUuidOf(call);
        await core.transact(async (tx) => {
          const group = await loadResource(tx, "SecurityGroup", uuid, call.caller);
          const stamp = now();
          const last = await tx
            .selectFrom("securityGroupRules")
            .select((eb) => eb.fn.max("priority").as("priority"))
            .where("securityGroupUuid", "=", uuid)
            .executeTakeFirst();
          let priority = Number(last?.priority ?? 0);

          for (const rule of call.params.rules as RuleParam[]) {
            priority += 1;
            await tx
              .insertInto("securityGroupRules")
              .values({
                uuid: newUuid(),
                securityGroupUuid: uuid,
                type: rule.type,
                protocol: rule.protocol,
                startPort: rule.startPort ?? null,
                endPort: rule.startPort === undefined ? null : (rule.endPort ?? rule.startPort),
                allowedCidr: rule.allowedCidr ?? null,
                remoteSecurityGroupUuid: rule.remoteSecurityGroupUuid ?? null,
                ipVersion: 4,
                priority,
                state: "Enabled",
                description: rule.description ?? null,
                accountUuid: String(group.accountUuid),
                createDate: stamp,
                lastOpDate: stamp,
              })
              .execute();
          }
        });
        return membersOf(core, uuid);
      },
      (tx) =>
        inventoryOf(tx, "SecurityGroup", groupUuidOf(call)).then((inventory) => ({
          inventory,
        })),
    ),
  queueKey: groupUuidOf,
};

const deleteSecurityGroupRule: ApiHandler = {
  async check(core, call) {
    for (const uuid of listParam(call, "ruleUuids")) {
      await loadResource(core.kysely, "SecurityGroupRule", uuid, call.caller);
    }
  },
  run: (core, call) =>
    changeAndPush(
      core,
      call,
      async () => {
        const uuids = listParam(call, "ruleUuids");
        const groups = await core.transact(async (tx) => {
          const owners = new Set<string>();

          for (const uuid of uuids) {
            const rule = await loadResource(tx, "SecurityGroupRule", uuid, call.caller);
            owners.add(String(rule.securityGroupUuid));
          }

          await tx.deleteFrom("securityGroupRules").where("uuid", "in", uuids).execute();
          return [...owners];
        });
        const nics = await Promise.all(groups.map((group) => membersOf(core, group)));
        return nics.flat();
      },
      async () => ({}),
    ),
  queueKey: () => "security-group-rules",
};

/** Loads the L3 network and checks it offers the SecurityGroup service. */
async function securityGroupL3(core: Core, l3NetworkUuid: string | undefined) {
  const l3 = await referenced(
    core.kysely,
    "l3Networks",
    l3NetworkUuid,
    "l3NetworkUuid",
    "L3 network",
  );
  const service = await core.kysely
    .selectFrom("l3NetworkServiceRefs")
    .select("networkServiceType")
    .where("l3NetworkUuid", "=", String(l3.uuid))
    .where("networkServiceType", "=", "SecurityGroup")
    .executeTakeFirst();

  if (!service) {
    invalid(
      "l3NetworkUuid",
      `L3 network ${String(l3.uuid)} has no SecurityGroup network service; attach it with attachNetworkServiceToL3Network first`,
    );
  }

  return l3;
}

const attachSecurityGroupToL3Network: ApiHandler = {
  async check(core, call) {
    await loadResource(core.kysely, "SecurityGroup", groupUuidOf(call), call.caller);
    await securityGroupL3(core, call.path.l3NetworkUuid);
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      const uuid = groupUuidOf(call);
      await loadResource(tx, "SecurityGroup", uuid, call.caller);
      await tx
        .insertInto("securityGroupL3NetworkRefs")
        .values({
          securityGroupUuid: uuid,
          l3NetworkUuid: call.path.l3NetworkUuid!,
          createDate: now(),
        })
        .onConflict((conflict) =>
          conflict.columns(["securityGroupUuid", "l3NetworkUuid"]).doNothing(),
        )
        .execute();
      return { inventory: await inventoryOf(tx, "SecurityGroup", uuid) };
    }),
  queueKey: groupUuidOf,
};

const detachSecurityGroupFromL3Network: ApiHandler = {
  async check(core, call) {
    await loadResource(core.kysely, "SecurityGroup", groupUuidOf(call), call.caller);
  },
  run: (core, call) =>
    changeAndPush(
      core,
      call,
      async () => {
        const uuid = groupUuidOf(call);
        const l3NetworkUuid = call.path.l3NetworkUuid!;
        // A NIC may only be in groups attached to its own network, so the group's NICs there leave.
        const nics = await core.kysely
          .selectFrom("vmNicSecurityGroupRefs")
          .innerJoin("vmNics", "vmNics.uuid", "vmNicSecurityGroupRefs.vmNicUuid")
          .select("vmNics.uuid as uuid")
          .where("vmNicSecurityGroupRefs.securityGroupUuid", "=", uuid)
          .where("vmNics.l3NetworkUuid", "=", l3NetworkUuid)
          .execute();
        const leaving = nics.map((nic) => nic.uuid);
        await core.transact(async (tx) => {
          if (leaving.length > 0) {
            await tx
              .deleteFrom("vmNicSecurityGroupRefs")
              .where("securityGroupUuid", "=", uuid)
              .where("vmNicUuid", "in", leaving)
              .execute();
          }

          await tx
            .deleteFrom("securityGroupL3NetworkRefs")
            .where("securityGroupUuid", "=", uuid)
            .where("l3NetworkUuid", "=", l3NetworkUuid)
            .execute();
        });
        return [...leaving, ...(leaving.length > 0 ? await nicsNamingGroups(core, [uuid]) : [])];
      },
      (tx) =>
        inventoryOf(tx, "SecurityGroup", groupUuidOf(call)).then((inventory) => ({
          inventory,
        })),
    ),
  queueKey: groupUuidOf,
};

/** Loads the NICs a caller may put in the group and checks each one's L3 network. */
async function nicsForGroup(core: Core, call: ApiCall, group: Row, uuids: string[]) {
  const attached = await core.kysely
    .selectFrom("securityGroupL3NetworkRefs")
    .select("l3NetworkUuid")
    .where("securityGroupUuid", "=", String(group.uuid))
    .execute();
  const l3s = new Set(attached.map((ref) => ref.l3NetworkUuid));
  const nics: Row[] = [];

  for (const uuid of uuids) {
    const nic = await referenced(core.kysely, "vmNics", uuid, "params.vmNicUuids", "VM NIC");

    if (nic.accountUuid !== group.accountUuid && !call.caller.isAdmin) {
      invalid("params.vmNicUuids", `VM NIC ${uuid} belongs to another account`);
    }

    if (!l3s.has(String(nic.l3NetworkUuid))) {
      invalid(
        "params.vmNicUuids",
        `VM NIC ${uuid} is on L3 network ${String(nic.l3NetworkUuid)}, which security group ${String(group.uuid)} is not attached to; attach the group to that network first`,
      );
    }

    nics.push(nic);
  }

  return nics;
}

const addVmNicToSecurityGroup: ApiHandler = {
  async check(core, call) {
    const group = await loadResource(core.kysely, "SecurityGroup", groupUuidOf(call), call.caller);
    await nicsForGroup(core, call, group, call.params.vmNicUuids as string[]);
  },
  run: (core, call) =>
    changeAndPush(
      core,
      call,
      async () => {
        const uuid = groupUuidOf(call);
        const group = await loadResource(core.kysely, "SecurityGroup", uuid, call.caller);
        const nics = await nicsForGroup(core, call, group, call.params.vmNicUuids as string[]);
        await core.transact(async (tx) => {
          for (const nic of nics) {
            await tx
              .insertInto("vmNicSecurityGroupRefs")
              .values({
                vmNicUuid: String(nic.uuid),
                securityGroupUuid: uuid,
                vmInstanceUuid: String(nic.vmInstanceUuid),
                createDate: now(),
              })
              .onConflict((conflict) =>
                conflict.columns(["vmNicUuid", "securityGroupUuid"]).doNothing(),
              )
              .execute();
          }
        });
        return [...nics.map((nic) => String(nic.uuid)), ...(await nicsNamingGroups(core, [uuid]))];
      },
      (tx) =>
        inventoryOf(tx, "SecurityGroup", groupUuidOf(call)).then((inventory) => ({
          inventory,
        })),
    ),
  queueKey: groupUuidOf,
};

const deleteVmNicFromSecurityGroup: ApiHandler = {
  async check(core, call) {
    await loadResource(core.kysely, "SecurityGroup", groupUuidOf(call), call.caller);
    listParam(call, "vmNicUuids");
  },
  run: (core, call) =>
    changeAndPush(
      core,
      call,
      async () => {
        const uuid = groupUuidOf(call);
        const nicUuids = listParam(call, "vmNicUuids");
        await core.transact(async (tx) => {
          await loadResource(tx, "SecurityGroup", uuid, call.caller);
          await tx
            .deleteFrom("vmNicSecurityGroupRefs")
            .where("securityGroupUuid", "=", uuid)
            .where("vmNicUuid", "in", nicUuids)
            .execute();
        });
        return [...nicUuids, ...(await nicsNamingGroups(core, [uuid]))];
      },
      async () => ({}),
    ),
  queueKey: groupUuidOf,
};

export const securityGroupHandlers: ApiHandlers = {
  createSecurityGroup,
  querySecurityGroup: queryHandler("SecurityGroup"),
  updateSecurityGroup: updateHandler("SecurityGroup"),
  deleteSecurityGroup,
  addSecurityGroupRule,
  querySecurityGroupRule: queryHandler("SecurityGroupRule"),
  deleteSecurityGroupRule,
  attachSecurityGroupToL3Network,
  detachSecurityGroupFromL3Network,
  addVmNicToSecurityGroup,
  deleteVmNicFromSecurityGroup,
};
