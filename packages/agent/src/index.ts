export { type Agent, type AgentOptions, startAgent } from "./agent.js";
export {
  MAX_SKEW_MS,
  SIGNATURE_HEADER,
  type SignatureHeaders,
  signRequest,
  TIMESTAMP_HEADER,
  type VerifyResult,
  verifyRequest,
} from "./auth.js";
export { collectFacts, readCapacity } from "./host/facts.js";
export { probeAccelerator } from "./host/kvm.js";
export * from "./protocol.js";
export { QmpClient, QmpError, type QmpEvent } from "./qmp/index.js";
export { adoptVms, QemuDriver, type QemuDriverOptions, type VmInfo } from "./vm/index.js";
