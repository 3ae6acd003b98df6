/**
 * Request and response bodies of the agent's HTTP protocol. Every request is a POST of JSON;
 * docs/agent-protocol.md describes headers, signing and callbacks.
 */
import type { HostCapacity, HostFacts } from "./host/facts.js";
import type { VmSpec, VmState } from "./vm/types.js";

export type { HostCapacity, HostFacts } from "./host/facts.js";
export type {
  MetricBatch,
  MetricNamespace,
  MetricSample,
  MonitoredPrimaryStorage,
  MonitoringConfig,
} from "./monitoring/types.js";
export type { DiskSpec, NicSpec, VmSpec, VmState } from "./vm/types.js";

/** Header naming an asynchronous task; a repeated value is not run twice. */
export const TASK_UUID_HEADER = "taskuuid";

/** Header with the URL the result of an asynchronous task is POSTed to. */
export const CALLBACK_URL_HEADER = "callbackurl";

/** Header naming the handler of a report sent to the management node's sendCommandUrl. */
export const COMMAND_PATH_HEADER = "commandpath";

/** Command path of VM state reports. */
export const VM_REPORT_PATH = "/vm/report/state";

/** Command path of the metric batches the agent pushes every monitoring interval. */
export const METRICS_REPORT_PATH = "/monitoring/samples";

/** Fields every response and callback body carries. */
export interface AgentResponse {
  success: boolean;
  /** Error message, present when success is false. */
  error?: string;
}

/** Body of `/host/connect`. */
export interface ConnectCmd {
  /** Host UUID, 32 lower-case hex digits. */
  hostUuid: string;
  /** Management node URL that receives reports the agent did not get a task for. */
  sendCommandUrl: string;
}

/** Response of `/host/connect`. */
export interface ConnectRsp extends AgentResponse {
  hostUuid: string;
}

/** Response of `/host/ping`. */
export interface PingRsp extends AgentResponse {
  /** Host UUID from the last connect, or null before the first connect. */
  hostUuid: string | null;
  sendCommandUrl: string | null;
  /** Agent package version. */
  version: string;
  /** Kernel boot id; a new value means the host rebooted. */
  bootId: string;
}

/** Response of `/host/facts`. */
export type FactsRsp = AgentResponse & HostFacts;

/** Response of `/host/capacity`. */
export type CapacityRsp = AgentResponse & HostCapacity;

/** Response of `/vm/vmsync`: state of every VM the agent tracks, by UUID. */
export interface VmSyncRsp extends AgentResponse {
  states: Record<string, VmState>;
}

/** Body of `/vm/console`. */
export interface ConsoleCmd {
  vmUuid: string;
  /** Bytes from the end of the serial console log, 1 to 1048576. */
  bytes: number;
}

/** Response of `/vm/console`. */
export interface ConsoleRsp extends AgentResponse {
  vmUuid: string;
  /** Tail of the serial console log, decoded as UTF-8. */
  console: string;
}

/** Body of `/vm/start`. */
export type StartVmCmd = VmSpec;

/** Body of `/vm/stop`. */
export interface StopVmCmd {
  vmUuid: string;
  /** Ends QEMU without pressing the ACPI power button first. */
  force?: boolean;
  /** Seconds the guest gets to power off after the button; 60 when unset. */
  timeoutSeconds?: number;
}

/** Body of `/vm/reboot`, `/vm/pause`, `/vm/resume` and `/vm/destroy`. */
export interface VmCmd {
  vmUuid: string;
}

/** Callback body of VM tasks other than destroy. */
export interface VmTaskRsp extends AgentResponse {
  vmUuid?: string;
  state?: VmState;
  /** VNC TCP port on the host's 127.0.0.1 while the VM runs. */
  vncPort?: number;
}

/** Body POSTed to sendCommandUrl with `commandpath: /vm/report/state`. */
export interface VmStateReport {
  vmUuid: string;
  state: VmState;
  reason: string;
}
