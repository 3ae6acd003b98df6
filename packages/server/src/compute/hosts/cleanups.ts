import type { Core } from "../../core/core.js";
import { newUuid, now } from "../../core/ids.js";
import { AgentError } from "../../drivers/agent-client.js";
import { agentTarget } from "./connect.js";

/** An agent command that removes something from a host, such as a VM's QEMU process. */
export interface CleanupCommand {
  hostUuid: string;
  /** The VM whose leftovers it removes; the VM's next start on the host runs it first. */
  vmUuid?: string;
  path: string;
  body: Record<string, unknown>;
  /** Sent with a task uuid and a callback, like `/vm/destroy`. */
  async?: boolean;
  /** Why it runs, for the log: the VM or volume it cleans up after. */
  reason: string;
  /**
   * Keeps the command when the agent returns an error too. A rollback then ends, and the command
   * is retried until it succeeds on the host.
   */
  keepOnError?: boolean;
}

/** Returns whether an agent error reports that the thing to remove no longer exists. */
export function alreadyGone(error: unknown) {
  return (
    error instanceof AgentError &&
    !error.unreachable &&
    /not found|unknown|does not exist|no VM|is not running on/i.test(error.message)
  );
}

/** Long enough for a slow `/vm/destroy`. An unreachable host fails sooner, at connect. */
const ASYNC_TIMEOUT_MS = 120_000;
const SYNC_TIMEOUT_MS = 30_000;

/**
 * Runs a cleanup on a host now, or, when the agent cannot be reached, keeps it in the database
 * and returns, so that a rollback or a delete finishes while the host is down. The kept command
 * runs when the host connects again and at each retry round. An agent that returns an error
 * still throws, unless the command sets `keepOnError`.
 */
export async function cleanUpOnHost(core: Core, command: CleanupCommand) {
  try {
    await send(core, command);
    return "done" as const;
  } catch (error) {
    const keepable =
      error instanceof AgentError && (error.unreachable || command.keepOnError === true);

    if (!keepable || alreadyGone(error)) {
      throw error;
    }

    await keep(core, command, error.message);
    return "deferred" as const;
  }
}

/**
 * Runs host work that may be skipped while the host is unreachable, because the next use
 * of the host redoes it, such as removing a bridge that the last VM on it no longer needs.
 */
export async function skipIfUnreachable(core: Core, hostUuid: string, work: () => Promise<void>) {
  try {
    await work();
  } catch (error) {
    if (!(error instanceof AgentError) || !error.unreachable) {
      throw error;
    }

    core.log.warn({ err: error, hostUuid }, "host unreachable; shared network devices left on it");
  }
}

async function send(core: Core, command: CleanupCommand) {
  const target = await agentTarget(core, command.hostUuid);

  if (command.async) {
    await core.agents.callAsync(target, command.path, command.body, {
      timeoutMs: ASYNC_TIMEOUT_MS,
    });
  } else {
    await core.agents.call(target, command.path, command.body, SYNC_TIMEOUT_MS);
  }
}

async function keep(core: Core, command: CleanupCommand, error: string) {
  const stamp = now();
  await core.kysely
    .insertInto("hostCleanups")
    .values({
      uuid: newUuid(),
      hostUuid: command.hostUuid,
      vmUuid: command.vmUuid ?? null,
      path: command.path,
      body: JSON.stringify(command.body),
      async: command.async ? 1 : 0,
      reason: command.reason,
      attempts: 0,
      lastError: error,
      createDate: stamp,
      lastOpDate: stamp,
    })
    .execute();
  core.log.warn(
    { hostUuid: command.hostUuid, path: command.path, reason: command.reason, err: error },
    "cleanup failed on the host; kept to run again",
  );
}

/**
 * Runs the cleanups kept for a host, oldest first, or only those of one VM, and deletes each
 * that succeeds. One that fails stays with its error for the next replay. Returns how many are
 * still kept. Replays of one host run one at a time, so a VM's start that flushes its cleanups
 * never overlaps a replay running them too.
 */
export function replayCleanups(core: Core, hostUuid: string, vmUuid?: string) {
  return core.queues.run(`host-cleanups:${hostUuid}`, () => replay(core, hostUuid, vmUuid));
}

async function replay(core: Core, hostUuid: string, vmUuid: string | undefined) {
  let query = core.kysely
    .selectFrom("hostCleanups")
    .selectAll()
    .where("hostUuid", "=", hostUuid)
    .orderBy("createDate");

  if (vmUuid) {
    query = query.where("vmUuid", "=", vmUuid);
  }

  let kept = 0;

  for (const row of await query.execute()) {
    const command = {
      hostUuid,
      path: row.path,
      body: JSON.parse(row.body) as Record<string, unknown>,
      async: row.async === 1,
      reason: row.reason,
    };

    try {
      await send(core, command).catch((error) => {
        if (!alreadyGone(error)) {
          throw error;
        }
      });
      await core.kysely.deleteFrom("hostCleanups").where("uuid", "=", row.uuid).execute();
      core.log.info({ hostUuid, path: row.path, reason: row.reason }, "kept cleanup ran");
    } catch (error) {
      kept++;
      await core.kysely
        .updateTable("hostCleanups")
        .set({
          attempts: row.attempts + 1,
          lastError: (error as Error).message,
          lastOpDate: now(),
        })
        .where("uuid", "=", row.uuid)
        .execute();
      core.log.warn({ err: error, hostUuid, path: row.path }, "kept cleanup failed again");
    }
  }

  return kept;
}

/** Replays kept cleanups whenever a host connects. */
export function replayCleanupsOnConnect(core: Core) {
  return core.bus.subscribe("host.connected", async (message) => {
    const { hostUuid } = message.body as { hostUuid: string };
    await replayCleanups(core, hostUuid).catch((error) =>
      core.log.warn({ err: error, hostUuid }, "replaying kept cleanups failed"),
    );
  });
}

/** Milliseconds between rounds that retry kept cleanups of connected hosts. */
const RETRY_ROUND_MS = 60_000;

/**
 * Retries the kept cleanups of hosts that are connected, such as a rollback's destroy that the
 * agent refused: once at start-up and then every minute. Returns a function that stops the rounds.
 */
export function retryCleanupsPeriodically(core: Core) {
  const round = async () => {
    const hosts = await core.kysely
      .selectFrom("hostCleanups")
      .innerJoin("hosts", "hosts.uuid", "hostCleanups.hostUuid")
      .select("hostCleanups.hostUuid")
      .distinct()
      .where("hosts.status", "=", "Connected")
      .execute();

    for (const { hostUuid } of hosts) {
      await replayCleanups(core, hostUuid);
    }
  };
  const retry = () => {
    round().catch((error) => core.log.warn({ err: error }, "retrying kept cleanups failed"));
  };
  const timer = setInterval(retry, RETRY_ROUND_MS);
  retry();
  timer.unref();
  return () => clearInterval(timer);
}
