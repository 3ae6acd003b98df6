/**
 * Host networking of the tstack agent: L2 bridges (NoVlan, VLAN, VXLAN), per-L3 DHCP and metadata
 * namespaces, security groups and outbound NAT. The agent's `/network/...` HTTP handlers call
 * these functions with the command bodies from `types.ts`.
 */
export {
  attachToBridge,
  deleteTap,
  ensureL2Network,
  ensureTap,
  type L2Devices,
  l2Devices,
  releaseL2NetworkIfUnused,
} from "./bridge.js";
export {
  applyDhcp,
  type DhcpServer,
  deleteDhcpServer,
  prepareDhcpServer,
  readDhcpEntries,
  releaseDhcp,
} from "./dhcp.js";
export { type NetworkHost, validateHost } from "./host.js";
export { applyUserdata, releaseUserdata } from "./metadata.js";
export { InvalidNameError } from "./names.js";
export { applyNat, removeNat } from "./nat.js";
export { applySecurityGroups, removeSecurityGroups } from "./security-group.js";
export type * from "./types.js";
export { ensureVlanInterface } from "./vlan.js";
export { syncVxlanPeers } from "./vxlan.js";
