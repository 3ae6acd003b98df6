import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { monitoringSettings } from "./config.js";
import { INGEST_PATH } from "./ingest.js";

/**
 * Sends `/monitoring/config` to one host's agent: the collection interval, the URL to push
 * batches to and the primary storages mounted on the host, whose filesystem space it reports.
 */
export async function configureAgentMonitoring(core: Core, hostUuid: string) {
  const target = await agentTarget(core, hostUuid);
  const base = await core.agents.managementUrl(target);
  const storages = await core.kysely
    .selectFrom("primaryStorages")
    .innerJoin(
      "primaryStorageClusterRefs",
      "primaryStorageClusterRefs.primaryStorageUuid",
      "primaryStorages.uuid",
    )
    .innerJoin("hosts", "hosts.clusterUuid", "primaryStorageClusterRefs.clusterUuid")
    .select(["primaryStorages.uuid", "primaryStorages.url"])
    .where("hosts.uuid", "=", hostUuid)
    .execute();

  await core.agents.call(target, "/monitoring/config", {
    intervalSeconds: monitoringSettings(core).intervalSeconds,
    pushUrl: `${base}${INGEST_PATH}/${hostUuid}`,
    primaryStorages: storages
      .filter((storage) => storage.url.startsWith("/"))
      .map((storage) => ({ uuid: storage.uuid, root: storage.url })),
  });
}

/** Configures every connected host, after the interval changed. */
export async function configureAllAgents(core: Core) {
  const hosts = await core.kysely
    .selectFrom("hosts")
    .select("uuid")
    .where("status", "=", "Connected")
    .execute();

  for (const host of hosts) {
    await configureAgentMonitoring(core, host.uuid).catch((error) =>
      core.log.warn({ err: error, hostUuid: host.uuid }, "configuring host monitoring failed"),
    );
  }
}
