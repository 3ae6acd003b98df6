import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { NetworkHost } from "./host.js";
import { validateUuid } from "./names.js";

/** Returns the agent's directory for one L3 network's dnsmasq and metadata files. */
export function l3StateDir(host: NetworkHost, l3NetworkUuid: string): string {
  return join(host.stateDir, "l3", validateUuid(l3NetworkUuid, "L3 network uuid"));
}

/** Writes a file by renaming a temporary one over it, so readers never see half a file. */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const temporary = `${path}.tmp`;
  await writeFile(temporary, text, { mode: 0o644 });
  await rename(temporary, path);
}
