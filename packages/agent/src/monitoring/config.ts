import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { assertInteger, assertOptionPath, assertUuid, ValidationError } from "../validate.js";
import type { MonitoringConfig } from "./types.js";

/** Collection interval until the management node sends `/monitoring/config`. */
export const DEFAULT_INTERVAL_SECONDS = 10;

const MAX_PRIMARY_STORAGES = 256;

/** Validates the body of `/monitoring/config`; throws a ValidationError naming the field. */
export function parseMonitoringConfig(body: Partial<MonitoringConfig>): MonitoringConfig {
  assertInteger(body.intervalSeconds, "intervalSeconds", 1, 3600);

  const pushUrl = body.pushUrl ?? null;

  if (pushUrl !== null && (typeof pushUrl !== "string" || !/^https?:\/\/[^\s]+$/.test(pushUrl))) {
    throw new ValidationError(
      `invalid pushUrl ${JSON.stringify(pushUrl)}: expected an http URL or null`,
    );
  }

  const storages = body.primaryStorages ?? [];

  if (!Array.isArray(storages) || storages.length > MAX_PRIMARY_STORAGES) {
    throw new ValidationError(
      `invalid primaryStorages: expected an array of at most ${MAX_PRIMARY_STORAGES} entries`,
    );
  }

  storages.forEach((storage, index) => {
    assertUuid(storage?.uuid, `primaryStorages[${index}].uuid`);
    assertOptionPath(storage.root, `primaryStorages[${index}].root`);
  });

  return {
    intervalSeconds: body.intervalSeconds as number,
    pushUrl,
    primaryStorages: storages.map((storage) => ({ uuid: storage.uuid, root: storage.root })),
  };
}

/** Reads the configuration saved by the last `/monitoring/config`, or the defaults. */
export async function readMonitoringConfig(dataDir: string): Promise<MonitoringConfig> {
  try {
    const text = await readFile(join(dataDir, "monitoring.json"), "utf8");
    return parseMonitoringConfig(JSON.parse(text) as MonitoringConfig);
  } catch {
    return { intervalSeconds: DEFAULT_INTERVAL_SECONDS, pushUrl: null, primaryStorages: [] };
  }
}

/** Saves the configuration atomically, so a restarted agent keeps collecting and pushing. */
export async function saveMonitoringConfig(dataDir: string, config: MonitoringConfig) {
  const path = join(dataDir, "monitoring.json");
  const partial = `${path}.partial`;

  await writeFile(partial, JSON.stringify(config), { mode: 0o600 });
  await rename(partial, path);
}
