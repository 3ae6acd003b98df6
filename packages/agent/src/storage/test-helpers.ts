import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

/** Creates a scratch directory under /tmp with this suite's prefix and returns its cleanup. */
export async function makeTempDir(label: string) {
  const dir = await mkdtemp(path.join(tmpdir(), `tqs-${label}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
