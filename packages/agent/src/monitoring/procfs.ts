/** Parsers of the Linux /proc files the metrics collector reads. All are pure functions of text. */

/** Clock ticks (USER_HZ) the host CPUs spent in total and while busy, summed over all CPUs. */
export interface CpuTimes {
  busy: number;
  total: number;
}

/** Transmit and receive counters of one network interface, as the kernel counts them. */
export interface InterfaceCounters {
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
}

/** Memory of the host in bytes, from /proc/meminfo. */
export interface HostMemory {
  totalBytes: number;
  availableBytes: number;
}

/**
 * Parses the aggregate `cpu` line of /proc/stat. Idle time is idle plus iowait. guest and
 * guest_nice are left out of the total because the kernel already counts them in user and nice.
 */
export function parseCpuTimes(procStat: string): CpuTimes {
  const line = procStat.split("\n").find((candidate) => candidate.startsWith("cpu "));

  if (!line) {
    throw new Error("invalid /proc/stat: no aggregate cpu line");
  }

  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);

  if (fields.length < 4 || fields.some((value) => !Number.isFinite(value))) {
    throw new Error(`invalid /proc/stat cpu line ${JSON.stringify(line)}`);
  }

  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = fields[3]! + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** Parses /proc/loadavg into the 1, 5 and 15 minute load averages. */
export function parseLoadAverage(text: string): [number, number, number] {
  const [one, five, fifteen] = text.trim().split(/\s+/).map(Number);

  if (![one, five, fifteen].every((value) => Number.isFinite(value))) {
    throw new Error(`invalid /proc/loadavg ${JSON.stringify(text.trim())}`);
  }

  return [one!, five!, fifteen!];
}

/** Parses MemTotal and MemAvailable of /proc/meminfo, which the kernel gives in KiB. */
export function parseMeminfo(text: string): HostMemory {
  const kib = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(text);

    if (!match) {
      throw new Error(`invalid /proc/meminfo: no ${name} line`);
    }

    return Number(match[1]) * 1024;
  };

  return { totalBytes: kib("MemTotal"), availableBytes: kib("MemAvailable") };
}

/**
 * Parses utime plus stime of /proc/<pid>/stat, in clock ticks. The command name in brackets may
 * contain spaces and brackets, so fields are counted from the last `)`.
 */
export function parseProcessCpuTicks(stat: string): number {
  const rest = stat
    .slice(stat.lastIndexOf(")") + 2)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state), so utime (field 14) and stime (field 15) are rest[11] and rest[12].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);

  if (!Number.isFinite(utime) || !Number.isFinite(stime)) {
    throw new Error(`invalid /proc/<pid>/stat ${JSON.stringify(stat.slice(0, 200))}`);
  }

  return utime + stime;
}

/** Parses VmRSS of /proc/<pid>/status into bytes; a process without memory (a zombie) has 0. */
export function parseResidentBytes(status: string): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/**
 * Parses /proc/net/dev into counters by interface name. It has the same counters as
 * /sys/class/net/<name>/statistics but costs one read for every interface of the namespace.
 */
export function parseNetDev(text: string): Map<string, InterfaceCounters> {
  const counters = new Map<string, InterfaceCounters>();

  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");

    // The two header lines contain `|` and no colon before it.
    if (colon < 0 || line.includes("|")) {
      continue;
    }

    const name = line.slice(0, colon).trim();
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);

    if (fields.length < 10 || fields.some((value) => !Number.isFinite(value))) {
      throw new Error(`invalid /proc/net/dev line ${JSON.stringify(line)}`);
    }

    counters.set(name, {
      rxBytes: fields[0]!,
      rxPackets: fields[1]!,
      txBytes: fields[8]!,
      txPackets: fields[9]!,
    });
  }

  return counters;
}
