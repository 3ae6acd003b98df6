export { ASYNC_PATHS, COMMANDS, CommandError } from "./commands/index.js";
export {
  ADMIN_PATHS,
  HttpSimulatorControl,
  SimulatorAdminError,
  type SimulatorControl,
  type VmStateChange,
} from "./control.js";
export {
  FAULT_KINDS,
  type Fault,
  type FaultKind,
  type FaultSpec,
  FaultSpecError,
  parseFaultSpec,
} from "./faults.js";
export { Simulator, type SimulatorOptions } from "./simulator.js";
export type {
  HostRegistration,
  NodeState,
  SimVm,
  SimVolume,
  StorageRegistration,
} from "./state.js";
