import { readFileSync } from "node:fs";
import { isAlive } from "../vm/process.js";

/**
 * Reads a process's start time in clock ticks after boot (field 22 of /proc/<pid>/stat), or
 * undefined when it is gone. Kept with the pid, it distinguishes a container's init from a later
 * process that reuses the pid.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may contain spaces, start at field 3 (state).
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** Checks that the process with that pid and start time still runs and is not a zombie. */
export function isSameProcessAlive(pid: number, startTime: string | undefined) {
  return isAlive(pid) && startTime !== undefined && processStartTime(pid) === startTime;
}
