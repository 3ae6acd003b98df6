import type { VmInfo } from "./vm/types.js";

/** Options of a stop, shared by every hypervisor driver. */
export interface HypervisorStopOptions {
  /** Milliseconds the guest or container init gets to end by itself before it is killed. */
  timeoutMs?: number;
  /** Kills at once, without asking the guest or container init to end. */
  force?: boolean;
}

/**
 * Operations the VM routes call on a hypervisor: QEMU for VMs, runc for containers. Each
 * driver keeps its own run directories and reports state changes it did not cause.
 */
export interface HypervisorDriver {
  /** Hypervisor type as the management node names it, e.g. `KVM` or `Container`. */
  readonly hypervisorType: string;
  start(spec: unknown): Promise<VmInfo>;
  stop(vmUuid: string, options?: HypervisorStopOptions): Promise<VmInfo>;
  reboot(vmUuid: string): Promise<VmInfo>;
  pause(vmUuid: string): Promise<VmInfo>;
  resume(vmUuid: string): Promise<VmInfo>;
  destroy(vmUuid: string): Promise<void>;
  /** Returns one instance, or undefined when this driver does not know it. */
  get(vmUuid: string): VmInfo | undefined;
  /** Returns every instance this driver tracks, with states read fresh where that is possible. */
  refreshStates(): Promise<VmInfo[]>;
  consoleTail(vmUuid: string, bytes: number): Promise<string>;
  /** Detaches from the running instances; they keep running for the next agent. */
  close(): void;
}
