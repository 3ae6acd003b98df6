import type { Core } from "../../core/core.js";
import { newUuid, now } from "../../core/ids.js";
import { SshSession } from "./ssh.js";

/** System tag that records a host's SSH key fingerprint at its first connect. */
export const HOST_KEY_TAG = "sshHostKey";

async function recordedFingerprint(core: Core, hostUuid: string) {
  const row = await core.kysely
    .selectFrom("tags")
    .select("tag")
    .where("resourceUuid", "=", hostUuid)
    .where("type", "=", "System")
    .where("tag", "like", `${HOST_KEY_TAG}::%`)
    .executeTakeFirst();
  return row?.tag.slice(HOST_KEY_TAG.length + 2);
}

async function recordFingerprint(core: Core, hostUuid: string, fingerprint: string) {
  await core.transact(async (tx) => {
    const host = await tx
      .selectFrom("hosts")
      .select("accountUuid")
      .where("uuid", "=", hostUuid)
      .executeTakeFirstOrThrow();
    const stamp = now();
    // Inherent tags belong to the system. Users cannot delete them, so they cannot drop the pin.
    await tx
      .insertInto("tags")
      .values({
        uuid: newUuid(),
        resourceUuid: hostUuid,
        resourceType: "Host",
        tag: `${HOST_KEY_TAG}::${fingerprint}`,
        type: "System",
        inherent: 1,
        accountUuid: host.accountUuid,
        createDate: stamp,
        lastOpDate: stamp,
      })
      .execute();
  });
}

/**
 * Logs in to a host with its stored credential. The first login trusts and records the host
 * key's fingerprint, and later logins reject any other key.
 */
export async function openHostSession(core: Core, hostUuid: string) {
  const host = await core.kysely
    .selectFrom("hosts")
    .select(["managementIp", "sshPort", "username", "credential"])
    .where("uuid", "=", hostUuid)
    .executeTakeFirstOrThrow();
  const credential = host.credential
    ? (JSON.parse(core.secrets.open(host.credential)) as { password?: string; sshKey?: string })
    : {};
  const known = await recordedFingerprint(core, hostUuid);
  const session = await SshSession.open({
    host: host.managementIp,
    port: host.sshPort,
    username: host.username ?? "root",
    password: credential.password,
    privateKey: credential.sshKey,
    knownFingerprint: known,
  });

  if (!known) {
    await recordFingerprint(core, hostUuid, session.fingerprint);
    core.log.info(
      { hostUuid, fingerprint: session.fingerprint },
      "trusting the host's SSH key at first connect",
    );
  }

  return session;
}

/** Runs `work` with a logged-in session and always closes it. */
export async function withHostSession<T>(
  core: Core,
  hostUuid: string,
  work: (session: SshSession) => Promise<T>,
) {
  const session = await openHostSession(core, hostUuid);

  try {
    return await work(session);
  } finally {
    session.close();
  }
}
