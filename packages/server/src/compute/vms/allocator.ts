import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import type { Database } from "../../db/schema.js";

/** What a VM needs from a host. */
export interface AllocationRequest {
  cpuNum: number;
  memorySize: number;
  hypervisorType: string;
  zoneUuid?: string;
  clusterUuid?: string;
  hostUuid?: string;
  /** Clusters that reach the VM's L2 networks; undefined when the VM has no networks. */
  clusterUuids?: string[];
  avoidHostUuids?: string[];
}

interface Candidate {
  uuid: string;
  name: string;
  zoneUuid: string;
  clusterUuid: string;
  state: string;
  status: string;
  hypervisorType: string;
  clusterState: string;
  availableCpu: number;
  availableMemory: number;
}

type Filter = (candidate: Candidate, request: AllocationRequest) => string | undefined;

const mib = (bytes: number) => `${Math.floor(bytes / 1024 / 1024)} MiB`;

/** Filters in ZStack's order; each returns why it rejects a host, or undefined. */
const FILTERS: Filter[] = [
  (host, request) =>
    host.hypervisorType !== request.hypervisorType
      ? `hypervisor type ${host.hypervisorType}, not ${request.hypervisorType}`
      : undefined,
  (host, request) =>
    request.zoneUuid && host.zoneUuid !== request.zoneUuid
      ? `not in zone ${request.zoneUuid}`
      : undefined,
  (host, request) =>
    request.clusterUuid && host.clusterUuid !== request.clusterUuid
      ? `not in cluster ${request.clusterUuid}`
      : undefined,
  (host, request) =>
    request.hostUuid && host.uuid !== request.hostUuid ? "not the requested host" : undefined,
  (host, request) =>
    request.clusterUuids && !request.clusterUuids.includes(host.clusterUuid)
      ? "its cluster is not attached to the VM's L2 networks"
      : undefined,
  (host) => (host.state !== "Enabled" ? `state ${host.state}` : undefined),
  (host) => (host.status !== "Connected" ? `status ${host.status}` : undefined),
  (host) =>
    host.clusterState !== "Enabled"
      ? `cluster ${host.clusterUuid} is ${host.clusterState}`
      : undefined,
  (host, request) =>
    request.avoidHostUuids?.includes(host.uuid) ? "avoided after a failure" : undefined,
  (host, request) =>
    host.availableCpu < request.cpuNum
      ? `${host.availableCpu} vCPUs available, ${request.cpuNum} needed`
      : undefined,
  (host, request) =>
    host.availableMemory < request.memorySize
      ? `${mib(host.availableMemory)} memory available, ${mib(request.memorySize)} needed`
      : undefined,
];

/**
 * Picks a host and reserves the VM's CPU and memory on it in the caller's transaction. The
 * reservation is a conditional update, so two allocations racing for the last memory of a host
 * cannot both win: the loser moves on to the next candidate. The error lists why each host was
 * rejected.
 */
export async function allocateHost(
  tx: Transaction<Database>,
  request: AllocationRequest,
): Promise<Candidate> {
  for (const host of await bestHosts(tx, request)) {
    if (await reserve(tx, host.uuid, request.cpuNum, request.memorySize)) {
      return host;
    }
  }

  return allocateFromAll(tx, request);
}

const CANDIDATE_COLUMNS = [
  "hosts.uuid",
  "hosts.name",
  "hosts.zoneUuid",
  "hosts.clusterUuid",
  "hosts.state",
  "hosts.status",
  "hosts.hypervisorType",
  "clusters.state as clusterState",
  "hostCapacities.availableCpu",
  "hostCapacities.availableMemory",
] as const;

/** Hosts of the request's hypervisor type with their cluster state and free capacity. */
function candidateQuery(tx: Transaction<Database>, request: AllocationRequest) {
  return tx
    .selectFrom("hosts")
    .innerJoin("hostCapacities", "hostCapacities.uuid", "hosts.uuid")
    .innerJoin("clusters", "clusters.uuid", "hosts.clusterUuid")
    .select(CANDIDATE_COLUMNS)
    .where("hosts.hypervisorType", "=", request.hypervisorType);
}

/**
 * Builds the candidate query in order of free memory. SQLite keeps the tables of a cross join in
 * the written order, so it walks `hostCapacities_available_memory` from the top and stops at
 * the limit. With an inner join it scanned every host and sorted them, about 0.6 ms per VM
 * with 1,000 hosts. PostgreSQL plans a cross join with a join condition like an inner join.
 */
function candidatesByMemory(tx: Transaction<Database>, request: AllocationRequest) {
  return tx
    .selectFrom("hostCapacities")
    .crossJoin("hosts")
    .innerJoin("clusters", "clusters.uuid", "hosts.clusterUuid")
    .select(CANDIDATE_COLUMNS)
    .whereRef("hosts.uuid", "=", "hostCapacities.uuid")
    .where("hosts.hypervisorType", "=", request.hypervisorType)
    .orderBy("hostCapacities.availableMemory", "desc");
}

/** Maximum hosts `bestHosts` returns. Only allocations racing on other connections use them all. */
const BEST_HOSTS = 8;

/**
 * Selects the few hosts that pass every filter, most free memory first, in SQL. Reading every
 * host of the type into the process took about 6 ms per VM with 1,000 simulator hosts.
 */
async function bestHosts(tx: Transaction<Database>, request: AllocationRequest) {
  if (request.clusterUuids?.length === 0) {
    return [];
  }

  let query = candidatesByMemory(tx, request)
    .where("hosts.state", "=", "Enabled")
    .where("hosts.status", "=", "Connected")
    .where("clusters.state", "=", "Enabled")
    .where("hostCapacities.availableCpu", ">=", request.cpuNum)
    .where("hostCapacities.availableMemory", ">=", request.memorySize);

  if (request.zoneUuid) {
    query = query.where("hosts.zoneUuid", "=", request.zoneUuid);
  }

  if (request.clusterUuid) {
    query = query.where("hosts.clusterUuid", "=", request.clusterUuid);
  }

  if (request.hostUuid) {
    query = query.where("hosts.uuid", "=", request.hostUuid);
  }

  if (request.clusterUuids) {
    query = query.where("hosts.clusterUuid", "in", request.clusterUuids);
  }

  if (request.avoidHostUuids?.length) {
    query = query.where("hosts.uuid", "not in", request.avoidHostUuids);
  }

  return (await query.limit(BEST_HOSTS).execute()) as Candidate[];
}

/**
 * Filters every host of the type in the process, tries all that pass and, when none is left,
 * raises an error that lists why each host was rejected. The fallback after `bestHosts`.
 */
async function allocateFromAll(
  tx: Transaction<Database>,
  request: AllocationRequest,
): Promise<Candidate> {
  const candidates = (await candidateQuery(tx, request).execute()) as Candidate[];

  const rejected: string[] = [];
  const passing = candidates.filter((host) => {
    const reason = FILTERS.map((filter) => filter(host, request)).find(
      (text) => text !== undefined,
    );

    if (reason) {
      rejected.push(`host ${host.name} (${host.uuid}): ${reason}`);
    }

    return reason === undefined;
  });

  // Spread VMs: the host with the most free memory first.
  passing.sort((a, b) => Number(b.availableMemory) - Number(a.availableMemory));

  for (const host of passing) {
    if (await reserve(tx, host.uuid, request.cpuNum, request.memorySize)) {
      return host;
    }

    rejected.push(
      `host ${host.name} (${host.uuid}): its capacity was taken by a concurrent allocation`,
    );
  }

  const details =
    candidates.length === 0 ? `no ${request.hypervisorType} host exists` : rejected.join("; ");
  throw new ApiError(
    "operationFailed",
    `no host can run a VM with ${request.cpuNum} vCPUs and ${mib(request.memorySize)} memory: ${details}`,
    "add or enable hosts, free capacity, or ask for less",
  );
}

/** Takes CPU and memory from a host if it still has them; returns whether it did. */
export async function reserve(
  tx: Transaction<Database>,
  hostUuid: string,
  cpuNum: number,
  memorySize: number,
) {
  const result = await tx
    .updateTable("hostCapacities")
    .set((eb) => ({
      availableCpu: eb("availableCpu", "-", cpuNum),
      availableMemory: eb("availableMemory", "-", memorySize),
    }))
    .where("uuid", "=", hostUuid)
    .where("availableCpu", ">=", cpuNum)
    .where("availableMemory", ">=", memorySize)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Gives a VM's CPU and memory back to its host, never above the host's total. */
export async function release(
  tx: Transaction<Database>,
  hostUuid: string,
  cpuNum: number,
  memorySize: number,
) {
  const capacity = await tx
    .selectFrom("hostCapacities")
    .selectAll()
    .where("uuid", "=", hostUuid)
    .executeTakeFirst();

  if (!capacity) {
    return;
  }

  await tx
    .updateTable("hostCapacities")
    .set({
      availableCpu: Math.min(capacity.totalCpu, capacity.availableCpu + cpuNum),
      availableMemory: Math.min(capacity.totalMemory, capacity.availableMemory + memorySize),
    })
    .where("uuid", "=", hostUuid)
    .execute();
}
