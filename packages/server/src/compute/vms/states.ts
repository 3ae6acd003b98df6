/** VM states as ZStack names them. */
export type VmState =
  | "Created"
  | "Starting"
  | "Running"
  | "Stopping"
  | "Stopped"
  | "Rebooting"
  | "Pausing"
  | "Paused"
  | "Resuming"
  | "Destroying"
  | "Destroyed"
  | "Expunging"
  | "Crashed"
  | "Unknown";

/** States in which an operation is in flight; the VM sync leaves such VMs alone. */
export const INTERMEDIATE_STATES: VmState[] = [
  "Starting",
  "Stopping",
  "Rebooting",
  "Pausing",
  "Resuming",
  "Destroying",
  "Expunging",
];

/** States in which each API may run. A state not listed for an API rejects it. */
export const ALLOWED_ACTIONS: Record<string, VmState[]> = {
  startVmInstance: ["Created", "Stopped", "Crashed"],
  stopVmInstance: ["Running", "Paused", "Unknown", "Crashed"],
  rebootVmInstance: ["Running"],
  pauseVmInstance: ["Running"],
  resumeVmInstance: ["Paused"],
  destroyVmInstance: ["Created", "Running", "Stopped", "Paused", "Unknown", "Crashed"],
  recoverVmInstance: ["Destroyed"],
  expungeVmInstance: ["Destroyed"],
  changeInstanceOffering: ["Created", "Stopped"],
  updateVmInstance: [
    "Created",
    "Starting",
    "Running",
    "Stopping",
    "Stopped",
    "Rebooting",
    "Pausing",
    "Paused",
    "Resuming",
    "Crashed",
    "Unknown",
    "Destroyed",
  ],
};

/** Allowed state transitions; anything else is a bug or a stale write and is refused. */
export const TRANSITIONS: Record<VmState, VmState[]> = {
  Created: ["Starting", "Stopped", "Destroying", "Destroyed"],
  Starting: ["Running", "Stopped", "Created", "Paused", "Destroying", "Unknown", "Crashed"],
  Running: [
    "Stopping",
    "Stopped",
    "Rebooting",
    "Pausing",
    "Paused",
    "Crashed",
    "Unknown",
    "Destroying",
    "Running",
  ],
  Stopping: ["Stopped", "Running", "Destroying", "Unknown"],
  Stopped: ["Starting", "Running", "Paused", "Destroying", "Destroyed", "Unknown", "Stopped"],
  Rebooting: ["Running", "Stopped", "Unknown", "Destroying", "Crashed"],
  Pausing: ["Paused", "Running", "Unknown", "Destroying"],
  Paused: ["Resuming", "Running", "Stopping", "Stopped", "Destroying", "Unknown", "Crashed"],
  Resuming: ["Running", "Paused", "Unknown", "Destroying"],
  Destroying: ["Destroyed", "Expunging", "Running", "Stopped", "Created", "Unknown"],
  Destroyed: ["Stopped", "Created", "Expunging"],
  Expunging: ["Destroyed"],
  Crashed: ["Running", "Stopped", "Stopping", "Starting", "Destroying", "Crashed", "Unknown"],
  Unknown: ["Running", "Stopped", "Paused", "Stopping", "Destroying", "Crashed", "Unknown"],
};

/** Returns the APIs a VM in `state` accepts, for error messages and the console. */
export function allowedActions(state: string) {
  return Object.entries(ALLOWED_ACTIONS)
    .filter(([, states]) => states.includes(state as VmState))
    .map(([name]) => name);
}
