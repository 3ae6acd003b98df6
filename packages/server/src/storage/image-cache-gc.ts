import { groupBy } from "../core/collections.js";
import type { Core } from "../core/core.js";
import { agentReason, storageCallAsync } from "./agent.js";
import { volumeHost } from "./volume-service.js";

/** One image cache row that the database shows unused, with its storage. */
interface UnusedCacheEntry {
  uuid: string;
  primaryStorageUuid: string;
  hostUuid: string;
  imageUuid: string;
  lastOpDate: string;
  url: string;
}

/** Reply of the agent's `/storage/imagecache/gc`. */
interface GcReply {
  deleted: string[];
  kept: { imageUuid: string; reason: string }[];
}

/** Counts of one garbage collection run. */
export interface ImageCacheGcSummary {
  deleted: number;
  kept: number;
  /** Storages (and hosts) whose agent could not be reached or failed; retried at the next run. */
  failed: number;
}

/**
 * Deletes the image cache entries that no volume and no CD-ROM uses and that no fill touched
 * within `primaryStorage.imageCache.garbageCollector.gracePeriod`, on one primary storage or
 * on all. The agent checks each entry again on its files before deleting it. A local storage's
 * entries go to the host that has them, a shared storage's to any connected host of its clusters.
 */
export async function collectImageCacheGarbage(
  core: Core,
  primaryStorageUuid?: string,
): Promise<ImageCacheGcSummary> {
  const graceSeconds = core.config.number(
    "primaryStorage",
    "imageCache.garbageCollector.gracePeriod",
  );
  const entries = await unusedEntries(core, graceSeconds, primaryStorageUuid);
  const summary: ImageCacheGcSummary = { deleted: 0, kept: 0, failed: 0 };

  for (const group of groupByStorageAndHost(entries)) {
    const first = group[0]!;
    await core.queues.run(`image-cache-gc:${first.primaryStorageUuid}`, async () => {
      const reply = await collectOnHost(core, group, graceSeconds);

      if (!reply) {
        summary.failed++;
        return;
      }

      await forgetDeleted(core, group, reply.deleted);
      summary.deleted += reply.deleted.length;
      summary.kept += reply.kept.length;
    });
  }

  return summary;
}

/**
 * Selects the cache rows older than the grace period that no volume of the same storage (and
 * host, for local storage) was made from and that no VM has in its CD-ROM drive. A volume row
 * exists from allocation on, before its overlay is made, so a create in progress counts as use.
 */
async function unusedEntries(core: Core, graceSeconds: number, primaryStorageUuid?: string) {
  const cutoff = new Date(Date.now() - graceSeconds * 1000).toISOString();
  let query = core.kysely
    .selectFrom("imageCaches")
    .innerJoin("primaryStorages", "primaryStorages.uuid", "imageCaches.primaryStorageUuid")
    .select([
      "imageCaches.uuid",
      "imageCaches.primaryStorageUuid",
      "imageCaches.hostUuid",
      "imageCaches.imageUuid",
      "imageCaches.lastOpDate",
      "primaryStorages.url",
    ])
    .where("imageCaches.lastOpDate", "<", cutoff)
    .where((eb) =>
      eb.not(
        eb.or([
          eb.exists(
            eb
              .selectFrom("volumes")
              .select("volumes.uuid")
              .whereRef("volumes.rootImageUuid", "=", "imageCaches.imageUuid")
              .whereRef("volumes.primaryStorageUuid", "=", "imageCaches.primaryStorageUuid")
              .where((inner) =>
                inner.or([
                  inner("imageCaches.hostUuid", "=", ""),
                  inner("volumes.hostUuid", "=", inner.ref("imageCaches.hostUuid")),
                ]),
              ),
          ),
          eb.exists(
            eb
              .selectFrom("vmCdRoms")
              .select("vmCdRoms.isoUuid")
              .whereRef("vmCdRoms.isoUuid", "=", "imageCaches.imageUuid")
              .whereRef("vmCdRoms.primaryStorageUuid", "=", "imageCaches.primaryStorageUuid"),
          ),
        ]),
      ),
    );

  if (primaryStorageUuid) {
    query = query.where("imageCaches.primaryStorageUuid", "=", primaryStorageUuid);
  }

  return (await query.execute()) as UnusedCacheEntry[];
}

function groupByStorageAndHost(entries: UnusedCacheEntry[]) {
  const groups = groupBy(entries, (entry) => `${entry.primaryStorageUuid}:${entry.hostUuid}`);
  return [...groups.values()];
}

/** Sends one storage's (and host's) candidates to the agent; returns undefined on failure. */
async function collectOnHost(core: Core, group: UnusedCacheEntry[], graceSeconds: number) {
  const first = group[0]!;
  const ids = { primaryStorageUuid: first.primaryStorageUuid, hostUuid: first.hostUuid };
  const hostUuid = await volumeHost(core, {
    primaryStorageUuid: first.primaryStorageUuid,
    hostUuid: first.hostUuid || null,
  });

  if (!hostUuid) {
    core.log.warn(ids, "image cache garbage collection skipped: no connected host reaches it");
    return undefined;
  }

  try {
    const reply = await storageCallAsync<GcReply>(
      core,
      hostUuid,
      "/storage/imagecache/gc",
      { root: first.url, imageUuids: group.map((entry) => entry.imageUuid), graceSeconds },
      { timeoutMs: core.config.number("primaryStorage", "imageCache.timeout") * 1000 },
    );
    core.log.info(
      { ...ids, deleted: reply.deleted, kept: reply.kept },
      "image cache garbage collection finished",
    );
    return reply;
  } catch (error) {
    core.log.warn(
      { ...ids, err: agentReason(error) },
      "image cache garbage collection failed; retrying at the next run",
    );
    return undefined;
  }
}

/**
 * Removes the rows of deleted entries. A row that a fill updated meanwhile belongs to a new copy,
 * which the agent made after the deletion, so it stays.
 */
async function forgetDeleted(core: Core, group: UnusedCacheEntry[], deleted: string[]) {
  for (const entry of group.filter((candidate) => deleted.includes(candidate.imageUuid))) {
    await core.kysely
      .deleteFrom("imageCaches")
      .where("uuid", "=", entry.uuid)
      .where("lastOpDate", "=", entry.lastOpDate)
      .execute();
  }
}

/**
 * Runs `collectImageCacheGarbage` on every primary storage every
 * `primaryStorage.imageCache.garbageCollector.interval` seconds, read again before each wait.
 */
export class ImageCacheCollector {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly core: Core) {}

  start() {
    const seconds = this.core.config.number(
      "primaryStorage",
      "imageCache.garbageCollector.interval",
    );
    this.timer = setTimeout(() => void this.runAndReschedule(), seconds * 1000);
    this.timer.unref();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async runAndReschedule() {
    try {
      await collectImageCacheGarbage(this.core);
    } catch (error) {
      this.core.log.warn({ err: error }, "image cache garbage collection failed");
    }

    if (this.timer) {
      this.start();
    }
  }
}
