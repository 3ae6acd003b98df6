import { statfs } from "node:fs/promises";

/** Size of the filesystem that contains a directory, in bytes. */
export interface FilesystemCapacity {
  totalCapacity: number;
  /** Bytes that unprivileged writers can still use (`f_bavail`). */
  availableCapacity: number;
}

/** Reads the capacity of the filesystem that contains `dir` with statfs(2). */
export async function filesystemCapacity(dir: string): Promise<FilesystemCapacity> {
  const stats = await statfs(dir);
  return {
    totalCapacity: stats.blocks * stats.bsize,
    availableCapacity: stats.bavail * stats.bsize,
  };
}
