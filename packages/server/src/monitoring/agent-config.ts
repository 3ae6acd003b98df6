import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { monitoringSettings } from "./config.js";
import { INGEST_PATH } from "./ingest.js";

/**
 * Keeps each connected agent's `/monitoring/config` current: the collection interval, the URL to
 * push batches to and the primary storages attached to the host's cluster, whose filesystem
 * space it reports. A config is sent when a host connects, and by `reconcile` when it differs
 * from the one last sent, so an attach, a detach or a new interval reaches the agents.
 */
export class AgentConfigurator {
  readonly #core: Core;
  /**
   * The config last sent to each host, with the management URL it was built from. A reconcile
   * compares against it without loading the host's target, which decrypts the host's secret.
   */
  readonly #sent = new Map<string, { baseUrl: string; text: string }>();

  constructor(core: Core) {
    this.#core = core;
  }

  /** Sends the config to one host whatever was sent before, as after a (re)connect. */
  async configure(hostUuid: string) {
    this.#sent.delete(hostUuid);
    await this.#send(hostUuid, (await this.#storagesByHost([hostUuid])).get(hostUuid) ?? []);
  }

  /** Sends the config to every connected host whose config changed since it was last sent. */
  async reconcile() {
    const hosts = await this.#core.kysely
      .selectFrom("hosts")
      .select("uuid")
      .where("status", "=", "Connected")
      .execute();
    const storages = await this.#storagesByHost(hosts.map((host) => host.uuid));

    for (const host of hosts) {
      await this.#send(host.uuid, storages.get(host.uuid) ?? []).catch((error) =>
        this.#core.log.warn(
          { err: error, hostUuid: host.uuid },
          "configuring host monitoring failed",
        ),
      );
    }
  }

  async #send(hostUuid: string, primaryStorages: { uuid: string; root: string }[]) {
    const sent = this.#sent.get(hostUuid);
    let target = sent ? undefined : await agentTarget(this.#core, hostUuid);
    const baseUrl = sent?.baseUrl ?? (await this.#core.agents.managementUrl(target!));
    const config = {
      intervalSeconds: monitoringSettings(this.#core).intervalSeconds,
      pushUrl: `${baseUrl}${INGEST_PATH}/${hostUuid}`,
      primaryStorages,
    };
    const text = JSON.stringify(config);

    if (sent?.text === text) {
      return;
    }

    target ??= await agentTarget(this.#core, hostUuid);
    await this.#core.agents.call(target, "/monitoring/config", config);
    this.#sent.set(hostUuid, { baseUrl, text });
  }

  async #storagesByHost(hostUuids: string[]) {
    const byHost = new Map<string, { uuid: string; root: string }[]>();

    if (hostUuids.length === 0) {
      return byHost;
    }

    const rows = await this.#core.kysely
      .selectFrom("primaryStorages")
      .innerJoin(
        "primaryStorageClusterRefs",
        "primaryStorageClusterRefs.primaryStorageUuid",
        "primaryStorages.uuid",
      )
      .innerJoin("hosts", "hosts.clusterUuid", "primaryStorageClusterRefs.clusterUuid")
      .select(["hosts.uuid as hostUuid", "primaryStorages.uuid", "primaryStorages.url"])
      .where("hosts.uuid", "in", hostUuids)
      .orderBy("primaryStorages.uuid")
      .execute();

    // Only directory-backed storages have a path on the host to statfs.
    for (const row of rows.filter((candidate) => candidate.url.startsWith("/"))) {
      byHost.set(row.hostUuid, [
        ...(byHost.get(row.hostUuid) ?? []),
        { uuid: row.uuid, root: row.url },
      ]);
    }

    return byHost;
  }
}
