import type { Module } from "../modules.js";
import { securityGroupHandlers } from "./security-groups-api.js";
import "./security-groups-resources.js";

/** Security groups: allow rules per group, pushed to the hosts of the member VM NICs. */
export function securityGroupModule(): Module {
  return { handlers: securityGroupHandlers };
}
