import { ApiError } from "@tstack/api";
import { connectHost } from "../compute/hosts/api.js";
import type { Core } from "../core/core.js";
import { newUuid } from "../core/ids.js";
import { insertResource, inventoryOf } from "../resources/crud.js";
import type { ApiCall, ApiHandler } from "../rest/api.js";
import { SIMULATOR } from "./targets.js";

async function checkCluster(core: Core, call: ApiCall) {
  const cluster = await core.kysely
    .selectFrom("clusters")
    .select(["uuid", "hypervisorType"])
    .where("uuid", "=", String(call.params.clusterUuid))
    .executeTakeFirst();

  if (!cluster) {
    throw new ApiError(
      "invalidArgument",
      `params.clusterUuid: cluster ${String(call.params.clusterUuid)} was not found`,
    );
  }

  if (cluster.hypervisorType !== SIMULATOR) {
    throw new ApiError(
      "invalidArgument",
      `params.clusterUuid: cluster ${cluster.uuid} is for ${cluster.hypervisorType} hosts; add simulator hosts to a cluster with hypervisorType Simulator`,
    );
  }
}

async function checkManagementIp(core: Core, call: ApiCall) {
  const taken = await core.kysely
    .selectFrom("hosts")
    .select("uuid")
    .where("managementIp", "=", String(call.params.managementIp))
    .executeTakeFirst();

  if (taken) {
    throw new ApiError(
      "invalidArgument",
      `params.managementIp: host ${taken.uuid} already uses ${String(call.params.managementIp)}`,
    );
  }
}

/**
 * Adds a simulator host. The management IP is only a label: commands go to the simulator. The
 * connect workflow then runs as for KVM, except that its deploy step registers the host with the
 * simulator instead of starting an agent.
 */
export function addSimulatorHost(): ApiHandler {
  return {
    async check(core, call) {
      await checkCluster(core, call);
      await checkManagementIp(core, call);
    },
    async run(core, call) {
      const hostUuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
      await core.transact(async (tx) => {
        const cluster = await tx
          .selectFrom("clusters")
          .select(["zoneUuid"])
          .where("uuid", "=", String(call.params.clusterUuid))
          .executeTakeFirstOrThrow();
        await insertResource(
          tx,
          core,
          "Host",
          {
            uuid: hostUuid,
            name: call.params.name,
            description: call.params.description ?? null,
            zoneUuid: cluster.zoneUuid,
            clusterUuid: call.params.clusterUuid,
            managementIp: call.params.managementIp,
            hypervisorType: SIMULATOR,
            state: "Enabled",
            status: "Connecting",
            architecture: null,
            username: null,
            sshPort: 22,
            credential: null,
            agentSecret: core.secrets.seal(newUuid() + newUuid()),
            // Commands go to the simulator's port, which agentTarget looks up at each call.
            agentPort: 0,
            facts: null,
            accelerator: null,
            lastError: null,
          },
          { ...call, params: { ...call.params, resourceUuid: hostUuid } },
        );
        await tx
          .insertInto("simulatorHosts")
          .values({
            uuid: hostUuid,
            cpuCapacity: Number(call.params.cpuCapacity),
            memoryCapacity: Number(call.params.memoryCapacity),
          })
          .execute();
      });

      await connectHost(core, hostUuid, call);
      return { inventory: await inventoryOf(core.kysely, "Host", hostUuid) };
    },
  };
}
