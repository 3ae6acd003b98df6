import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** Host UUID and report URL that the management node sent in its last `/host/connect`. */
export interface Connection {
  hostUuid: string;
  sendCommandUrl: string;
}

/** Reads the connection saved in the data directory, or undefined before the first connect. */
export async function readConnection(dataDir: string): Promise<Connection | undefined> {
  try {
    return JSON.parse(await readFile(join(dataDir, "connection.json"), "utf8")) as Connection;
  } catch {
    return undefined;
  }
}

/** Saves the connection atomically, so a restarted agent keeps reporting to the same URL. */
export async function saveConnection(dataDir: string, connection: Connection) {
  const path = join(dataDir, "connection.json");
  const partial = `${path}.partial`;

  await writeFile(partial, JSON.stringify(connection), { mode: 0o600 });
  await rename(partial, path);
}
