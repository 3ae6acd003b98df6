import type { Core } from "../core/core.js";
import type { AgentTarget } from "../drivers/agent-client.js";
import { simulatorLink } from "./link.js";
import { hostRegistration, simulatorHostRows, storageRegistration } from "./registrations.js";

/** The hypervisor type of simulator hosts, clusters and VMs. */
export const SIMULATOR = "Simulator";

/** Points a simulator host's commands at the simulator instead of its management IP. */
export async function simulatorHostTarget(
  core: Core,
  host: { uuid: string; agentSecret: string },
): Promise<AgentTarget> {
  const link = await simulatorLink(core);
  return {
    hostUuid: host.uuid,
    managementIp: link.host,
    agentPort: link.port,
    secret: core.secrets.open(host.agentSecret),
  };
}

/**
 * Returns the target of a simulator backup storage. It is its own image store host, so its
 * `hostUuid` is its own uuid. Returns undefined for any other uuid.
 */
export async function simulatorStorageTarget(
  core: Core,
  uuid: string,
): Promise<AgentTarget | undefined> {
  const storage = await core.kysely
    .selectFrom("simulatorStorages")
    .select(["uuid", "agentSecret"])
    .where("uuid", "=", uuid)
    .where("kind", "=", "backup")
    .executeTakeFirst();

  if (!storage?.agentSecret) {
    return undefined;
  }

  const link = await simulatorLink(core);
  return {
    hostUuid: storage.uuid,
    managementIp: link.host,
    agentPort: link.port,
    secret: core.secrets.open(storage.agentSecret),
  };
}

/**
 * Registers a simulator host with the simulator from its rows. Returns whether the simulator
 * did not know it before, so a failed connect removes only what it added.
 */
export async function registerSimulatorHost(core: Core, hostUuid: string) {
  const [row] = await simulatorHostRows(core, hostUuid);

  if (!row) {
    throw new Error(`host ${hostUuid} is not a simulator host`);
  }

  const { control } = await simulatorLink(core);
  const known = (await control.state(hostUuid)).length > 0;
  await control.registerHost(hostRegistration(core, row));

  if (!known) {
    // A host the simulator does not know may mean the simulator restarted and lost the storage
    // too. Registering a known storage again keeps its files.
    for (const storage of await core.kysely.selectFrom("simulatorStorages").selectAll().execute()) {
      await control.registerStorage(storageRegistration(core, storage));
    }
  }

  return !known;
}

/** Registers a simulator storage with the simulator from its row; re-registering keeps its files. */
export async function registerSimulatorStorage(core: Core, uuid: string) {
  const row = await core.kysely
    .selectFrom("simulatorStorages")
    .selectAll()
    .where("uuid", "=", uuid)
    .executeTakeFirstOrThrow();
  const { control } = await simulatorLink(core);
  await control.registerStorage(storageRegistration(core, row));
}

/** Removes a host or storage from the simulator; a failure is logged, since the row is gone. */
export async function unregisterFromSimulator(core: Core, uuid: string, kind: "host" | "storage") {
  try {
    const { control } = await simulatorLink(core);

    if (kind === "host") {
      await control.unregisterHost(uuid);
    } else {
      await control.unregisterStorage(uuid);
    }
  } catch (error) {
    core.log.warn(
      { err: error, uuid, kind },
      "failed to remove a resource from the simulator; it stays there until the simulator restarts",
    );
  }
}
