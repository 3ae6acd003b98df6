import type { Kysely } from "kysely";
import type { Database } from "../db/schema.js";
import {
  commonFields,
  commonInventory,
  defineResource,
  extendResource,
} from "../resources/registry.js";

type Row = Record<string, unknown>;

function nullableNumber(value: unknown) {
  return value === null || value === undefined ? null : Number(value);
}

export function securityGroupRuleInventory(row: Row) {
  return {
    uuid: row.uuid,
    securityGroupUuid: row.securityGroupUuid,
    type: row.type,
    ipVersion: Number(row.ipVersion),
    priority: Number(row.priority),
    protocol: row.protocol,
    startPort: nullableNumber(row.startPort),
    endPort: nullableNumber(row.endPort),
    allowedCidr: row.allowedCidr ?? null,
    remoteSecurityGroupUuid: row.remoteSecurityGroupUuid ?? null,
    state: row.state,
    description: row.description ?? null,
    createDate: row.createDate,
    lastOpDate: row.lastOpDate,
  };
}

/** Adds each group's rules, L3 networks and member NICs to a page of groups. */
async function enrichGroups(db: Kysely<Database>, rows: Row[]) {
  if (rows.length === 0) {
    return rows;
  }

  const uuids = rows.map((row) => String(row.uuid));
  const rules = await db
    .selectFrom("securityGroupRules")
    .selectAll()
    .where("securityGroupUuid", "in", uuids)
    .orderBy("priority")
    .execute();
  const l3s = await db
    .selectFrom("securityGroupL3NetworkRefs")
    .selectAll()
    .where("securityGroupUuid", "in", uuids)
    .execute();
  const nics = await db
    .selectFrom("vmNicSecurityGroupRefs")
    .selectAll()
    .where("securityGroupUuid", "in", uuids)
    .execute();

  return rows.map((row) => ({
    ...row,
    rules: rules.filter((rule) => rule.securityGroupUuid === row.uuid),
    attachedL3NetworkUuids: l3s
      .filter((ref) => ref.securityGroupUuid === row.uuid)
      .map((ref) => ref.l3NetworkUuid),
    vmNicUuids: nics
      .filter((ref) => ref.securityGroupUuid === row.uuid)
      .map((ref) => ref.vmNicUuid),
  }));
}

defineResource({
  type: "SecurityGroup",
  table: "securityGroups",
  key: "uuid",
  visibility: "owner",
  taggable: true,
  fields: { ...commonFields, state: "string", ipVersion: "number" },
  relations: {
    rules: { resource: "SecurityGroupRule", local: "uuid", foreign: "securityGroupUuid" },
  },
  enrich: enrichGroups,
  toInventory: (row) =>
    commonInventory(row, {
      state: row.state,
      ipVersion: Number(row.ipVersion),
      rules: ((row.rules as Row[] | undefined) ?? []).map(securityGroupRuleInventory),
      attachedL3NetworkUuids: row.attachedL3NetworkUuids ?? [],
      vmNicUuids: row.vmNicUuids ?? [],
    }),
});

defineResource({
  type: "SecurityGroupRule",
  table: "securityGroupRules",
  key: "uuid",
  visibility: "owner",
  fields: {
    uuid: "string",
    securityGroupUuid: "string",
    type: "string",
    protocol: "string",
    startPort: "number",
    endPort: "number",
    allowedCidr: "string",
    remoteSecurityGroupUuid: "string",
    state: "string",
    priority: "number",
    createDate: "date",
    lastOpDate: "date",
  },
  defaultSort: "priority",
  relations: {
    securityGroup: { resource: "SecurityGroup", local: "securityGroupUuid", foreign: "uuid" },
  },
  toInventory: securityGroupRuleInventory,
});

/**
 * Shows on each host whether its last security-group push failed: the error and the failed
 * attempts since the last success, or null and 0 once a push succeeds.
 */
extendResource("Host", {
  async enrich(db, rows) {
    if (rows.length === 0) {
      return rows;
    }

    const failures = await db
      .selectFrom("securityGroupFailureHosts")
      .select(["hostUuid", "attempts", "lastError"])
      .where(
        "hostUuid",
        "in",
        rows.map((row) => String(row.uuid)),
      )
      .execute();

    if (failures.length === 0) {
      return rows;
    }

    const byHost = new Map(failures.map((failure) => [failure.hostUuid, failure]));

    for (const row of rows) {
      const failure = byHost.get(String(row.uuid));

      if (failure) {
        row.securityGroupPushError = failure.lastError;
        row.securityGroupPushAttempts = failure.attempts;
      }
    }

    return rows;
  },
  inventory: (row) => ({
    securityGroupPushError: row.securityGroupPushError ?? null,
    securityGroupPushAttempts: Number(row.securityGroupPushAttempts ?? 0),
  }),
});
