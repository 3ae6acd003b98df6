import { cleanUpOnHost } from "../compute/hosts/cleanups.js";
import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { failedHosts, recordPushFailure } from "./security-groups-failures.js";

/** A rule as the agent takes it; see `SecurityGroupRule` in packages/agent/src/network/types.ts. */
interface AgentRule {
  direction: "ingress" | "egress";
  protocol: string;
  startPort?: number;
  endPort?: number;
  cidr?: string;
  remoteGroupUuid?: string;
}

interface NicRules {
  nicUuid: string;
  ips: string[];
  rules: AgentRule[];
}

type RuleRow = {
  securityGroupUuid: string;
  type: string;
  protocol: string;
  startPort: number | null;
  endPort: number | null;
  allowedCidr: string | null;
  remoteSecurityGroupUuid: string | null;
};

/** Pushes to different hosts that may run at once; more wait for a free slot. */
const PARALLEL_HOSTS = 32;

/**
 * Changes read their rule sets one at a time here and queue them on each host before the next
 * change reads, so each host's queue contains the sets in the order they were read.
 */
const COMPUTE_QUEUE = "security-group-compute";

/**
 * Runs a push to one host. Pushes to a host run one at a time, in the order they were queued.
 * Hosts do not wait for each other, so a host that hangs until the agent call times out delays
 * no other host.
 */
export function runHostPush<T>(core: Core, hostUuid: string, push: () => Promise<T>) {
  return core.queues.run(`security-group-push:${hostUuid}`, () =>
    core.queues.run("security-group-push-slots", push, PARALLEL_HOSTS),
  );
}

function toAgentRule(rule: RuleRow): AgentRule {
  return {
    direction: rule.type === "Ingress" ? "ingress" : "egress",
    protocol: rule.protocol.toLowerCase(),
    ...(rule.startPort === null ? {} : { startPort: Number(rule.startPort) }),
    ...(rule.endPort === null ? {} : { endPort: Number(rule.endPort) }),
    ...(rule.allowedCidr === null ? {} : { cidr: rule.allowedCidr }),
    ...(rule.remoteSecurityGroupUuid === null
      ? {}
      : { remoteGroupUuid: rule.remoteSecurityGroupUuid }),
  };
}

/** Finds the hosts of each NIC: where it was prepared and where its VM runs. */
async function hostsOf(core: Core, nicUuids: string[]) {
  const prepared = await core.kysely
    .selectFrom("vmNicHostRefs")
    .select(["nicUuid", "hostUuid"])
    .where("nicUuid", "in", nicUuids)
    .execute();
  const running = await core.kysely
    .selectFrom("vmNics")
    .innerJoin("vmInstances", "vmInstances.uuid", "vmNics.vmInstanceUuid")
    .select(["vmNics.uuid as nicUuid", "vmInstances.hostUuid as hostUuid"])
    .where("vmNics.uuid", "in", nicUuids)
    .where("vmInstances.hostUuid", "is not", null)
    .execute();
  const hosts = new Map<string, Set<string>>();

  for (const { nicUuid, hostUuid } of [...prepared, ...running]) {
    hosts.set(nicUuid, (hosts.get(nicUuid) ?? new Set()).add(String(hostUuid)));
  }

  return hosts;
}

/** Collects the full rule set of each NIC, which is the rules of every group it is in. */
async function rulesOf(core: Core, nicUuids: string[]) {
  const nics = await core.kysely
    .selectFrom("vmNics")
    .select(["uuid", "ip"])
    .where("uuid", "in", nicUuids)
    .execute();
  const refs = await core.kysely
    .selectFrom("vmNicSecurityGroupRefs")
    .select(["vmNicUuid", "securityGroupUuid"])
    .where("vmNicUuid", "in", nicUuids)
    .execute();
  const groups = [...new Set(refs.map((ref) => ref.securityGroupUuid))];
  const rules: RuleRow[] =
    groups.length === 0
      ? []
      : await core.kysely
          .selectFrom("securityGroupRules")
          .selectAll()
          .where("securityGroupUuid", "in", groups)
          .orderBy("securityGroupUuid")
          .orderBy("priority")
          .execute();

  return nics.map((nic) => {
    const mine = new Set(
      refs.filter((ref) => ref.vmNicUuid === nic.uuid).map((ref) => ref.securityGroupUuid),
    );
    return {
      nicUuid: nic.uuid,
      ips: [nic.ip],
      inGroup: mine.size > 0,
      rules: rules.filter((rule) => mine.has(rule.securityGroupUuid)).map(toAgentRule),
    };
  });
}

/** Reads the member addresses of each named group. */
async function membersOf(core: Core, groupUuids: string[]) {
  const members: Record<string, string[]> = Object.fromEntries(groupUuids.map((g) => [g, []]));

  if (groupUuids.length === 0) {
    return members;
  }

  const rows = await core.kysely
    .selectFrom("vmNicSecurityGroupRefs")
    .innerJoin("vmNics", "vmNics.uuid", "vmNicSecurityGroupRefs.vmNicUuid")
    .select(["vmNicSecurityGroupRefs.securityGroupUuid as group", "vmNics.ip as ip"])
    .where("vmNicSecurityGroupRefs.securityGroupUuid", "in", groupUuids)
    .orderBy("vmNics.ip")
    .execute();

  for (const row of rows) {
    members[row.group]!.push(row.ip);
  }

  return members;
}

async function pushToHost(core: Core, hostUuid: string, apply: NicRules[], remove: string[]) {
  const target = await agentTarget(core, hostUuid);

  if (apply.length > 0) {
    const named = apply.flatMap((nic) => nic.rules.flatMap((rule) => rule.remoteGroupUuid ?? []));
    const remoteGroups = await membersOf(core, [...new Set(named)]);
    await core.agents.call(target, "/network/securitygroup/apply", { nics: apply, remoteGroups });
  }

  if (remove.length > 0) {
    await core.agents.call(target, "/network/securitygroup/remove", { nicUuids: remove });
  }
}

/** Splits NIC rule sets into what to apply (NICs in a group) and what to remove (the rest). */
function applyAndRemove(nics: Awaited<ReturnType<typeof rulesOf>>) {
  const apply: NicRules[] = [];
  const remove: string[] = [];

  for (const nic of nics) {
    if (nic.inGroup) {
      apply.push({ nicUuid: nic.nicUuid, ips: nic.ips, rules: nic.rules });
    } else {
      remove.push(nic.nicUuid);
    }
  }

  return { apply, remove };
}

/** Finds the NICs prepared on a host or whose VM runs there. */
async function nicsOnHost(core: Core, hostUuid: string) {
  const prepared = await core.kysely
    .selectFrom("vmNicHostRefs")
    .select("nicUuid")
    .where("hostUuid", "=", hostUuid)
    .execute();
  const running = await core.kysely
    .selectFrom("vmNics")
    .innerJoin("vmInstances", "vmInstances.uuid", "vmNics.vmInstanceUuid")
    .select("vmNics.uuid as nicUuid")
    .where("vmInstances.hostUuid", "=", hostUuid)
    .execute();
  return [...new Set([...prepared, ...running].map((row) => row.nicUuid))];
}

/**
 * Sends a host the full rule set of every NIC on it, and removes the rules of its NICs in no
 * group. Run it inside `runHostPush`, so it reads the rules after every set queued before it.
 * NOTE: a NIC no longer on the host is not in the set. A NIC that left its groups and then its
 * host during a failed push keeps its chains there until it is pushed to that host again.
 */
export async function pushHostRuleSet(core: Core, hostUuid: string) {
  const nicUuids = await nicsOnHost(core, hostUuid);

  if (nicUuids.length === 0) {
    return;
  }

  const { apply, remove } = applyAndRemove(await rulesOf(core, nicUuids));
  await pushToHost(core, hostUuid, apply, remove);
}

/**
 * Sends one host its part of a change. A host with a failed push still marked gets its full rule
 * set instead, because it may lack the rules of earlier changes too. A failure marks the host for
 * background retry and is not raised, because the change is already committed.
 */
async function pushOrMark(
  core: Core,
  hostUuid: string,
  change: { apply: NicRules[]; remove: string[] },
  marked: boolean,
) {
  try {
    if (marked) {
      await pushHostRuleSet(core, hostUuid);
    } else {
      await pushToHost(core, hostUuid, change.apply, change.remove);
    }
  } catch (error) {
    await recordPushFailure(core, hostUuid, error).catch((recordError: unknown) =>
      core.log.error(
        { err: recordError, hostUuid, pushError: (error as Error).message },
        "recording a failed security group push failed",
      ),
    );
  }
}

/** Reads the rule set of each NIC and groups them by the hosts they are on. */
async function changesPerHost(core: Core, nicUuids: string[], onlyHost: string | undefined) {
  const hosts = await hostsOf(core, nicUuids);
  const { apply, remove } = applyAndRemove(await rulesOf(core, nicUuids));
  const perHost = new Map<string, { apply: NicRules[]; remove: string[] }>();
  const entryOf = (host: string) => {
    const entry = perHost.get(host) ?? { apply: [], remove: [] };
    perHost.set(host, entry);
    return entry;
  };
  const onHosts = (nicUuid: string) =>
    [...(hosts.get(nicUuid) ?? [])].filter((host) => onlyHost === undefined || host === onlyHost);

  for (const nic of apply) {
    for (const host of onHosts(nic.nicUuid)) {
      entryOf(host).apply.push(nic);
    }
  }

  for (const nicUuid of remove) {
    for (const host of onHosts(nicUuid)) {
      entryOf(host).remove.push(nicUuid);
    }
  }

  return perHost;
}

/**
 * Recomputes the full rule set of each NIC and sends it to every host where the NIC is, to all
 * hosts at once. A NIC in no group has its rules removed there. A host that fails is marked and
 * retried in the background. `onlyHost` limits the push to one host, for a VM start, and then a
 * failure is raised so the start fails instead of running the VM without its rules.
 */
export async function pushSecurityGroups(core: Core, nicUuids: string[], onlyHost?: string) {
  const unique = [...new Set(nicUuids)];

  if (unique.length === 0) {
    return;
  }

  const sends = await core.queues.run(COMPUTE_QUEUE, async () => {
    const perHost = await changesPerHost(core, unique, onlyHost);
    const marked = await failedHosts(core, onlyHost === undefined ? [...perHost.keys()] : []);

    // Queued before the next change computes, so no host gets this set after a newer one.
    return [...perHost].map(([host, change]) =>
      runHostPush(core, host, () =>
        onlyHost === undefined
          ? pushOrMark(core, host, change, marked.has(host))
          : pushToHost(core, host, change.apply, change.remove),
      ),
    );
  });

  await Promise.all(sends);
}

/** Removes the rules of NICs leaving a host, for a VM stop. NICs in no group are skipped. */
export async function removeSecurityGroupsOnHost(
  core: Core,
  nicUuids: string[],
  hostUuid: string,
  vmUuid?: string,
) {
  if (nicUuids.length === 0) {
    return;
  }

  const grouped = await core.kysely
    .selectFrom("vmNicSecurityGroupRefs")
    .select("vmNicUuid")
    .distinct()
    .where("vmNicUuid", "in", nicUuids)
    .execute();

  if (grouped.length === 0) {
    return;
  }

  const groupedUuids = grouped.map((row) => row.vmNicUuid);
  // Queued from inside the compute queue, so a change that read these NICs on the host before
  // this point queues its set before this removal. The array keeps the queue from awaiting it.
  const [removal] = await core.queues.run(COMPUTE_QUEUE, async () => [
    runHostPush(core, hostUuid, () =>
      cleanUpOnHost(core, {
        hostUuid,
        vmUuid,
        path: "/network/securitygroup/remove",
        body: { nicUuids: groupedUuids },
        reason: `remove security group rules of VM NICs ${groupedUuids.join(", ")}`,
      }),
    ),
  ]);
  await removal;
}

/** Finds NICs whose rules name one of these groups as remote group: their peer sets change. */
export async function nicsNamingGroups(core: Core, groupUuids: string[]) {
  if (groupUuids.length === 0) {
    return [];
  }

  const rows = await core.kysely
    .selectFrom("securityGroupRules")
    .innerJoin(
      "vmNicSecurityGroupRefs",
      "vmNicSecurityGroupRefs.securityGroupUuid",
      "securityGroupRules.securityGroupUuid",
    )
    .select("vmNicSecurityGroupRefs.vmNicUuid as nicUuid")
    .distinct()
    .where("securityGroupRules.remoteSecurityGroupUuid", "in", groupUuids)
    .execute();
  return rows.map((row) => row.nicUuid);
}
