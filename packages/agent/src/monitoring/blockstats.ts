/** Read and write counters of one QEMU block device, from QMP `query-blockstats`. */
export interface BlockCounters {
  /** Drive id given on the QEMU command line, `disk<index>` for tstack VMs. */
  device: string;
  readBytes: number;
  writeBytes: number;
  readOps: number;
  writeOps: number;
}

interface QmpBlockStats {
  device?: string;
  stats?: {
    rd_bytes?: number;
    wr_bytes?: number;
    rd_operations?: number;
    wr_operations?: number;
  };
}

/**
 * Converts the return value of `query-blockstats` into counters by drive id. Entries without a
 * drive id, such as backing nodes when `query-nodes` is set, are skipped.
 */
export function parseBlockStats(value: unknown): BlockCounters[] {
  if (!Array.isArray(value)) {
    throw new Error("invalid query-blockstats reply: expected an array");
  }

  const counters: BlockCounters[] = [];

  for (const entry of value as QmpBlockStats[]) {
    if (!entry?.device || !entry.stats) {
      continue;
    }

    counters.push({
      device: entry.device,
      readBytes: entry.stats.rd_bytes ?? 0,
      writeBytes: entry.stats.wr_bytes ?? 0,
      readOps: entry.stats.rd_operations ?? 0,
      writeOps: entry.stats.wr_operations ?? 0,
    });
  }

  return counters;
}

/** Returns the drive index of a `disk<index>` drive id, or undefined for other ids. */
export function diskIndex(device: string): number | undefined {
  const match = /^disk(\d+)$/.exec(device);
  return match ? Number(match[1]) : undefined;
}

/**
 * Returns the volume UUID of a disk path on a primary storage, which keeps each volume in a
 * `vol-<uuid>` directory, or undefined for a disk outside that layout.
 */
export function volumeUuidOfPath(path: string): string | undefined {
  return /\/vol-([0-9a-f]{32})\//.exec(path)?.[1];
}
