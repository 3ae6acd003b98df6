import { computeRoutes } from "./compute.js";
import type { ApiRoute } from "./declare.js";
import { identityRoutes } from "./identity.js";
import { infrastructureRoutes } from "./infrastructure.js";
import { networkRoutes } from "./network.js";
import { platformRoutes } from "./platform.js";
import { securityGroupRoutes } from "./security-groups.js";
import { simulatorRoutes } from "./simulator.js";
import { storageRoutes } from "./storage.js";
import { vmRoutes } from "./vm.js";
import { volumeRoutes } from "./volumes.js";

export { type ApiKind, type ApiRoute, crud, stateEventEnableDisable, update } from "./declare.js";
export {
  computeRoutes,
  identityRoutes,
  infrastructureRoutes,
  networkRoutes,
  platformRoutes,
  securityGroupRoutes,
  simulatorRoutes,
  storageRoutes,
  vmRoutes,
  volumeRoutes,
};

/** Every API of the contract. */
export const apiRoutes: ApiRoute[] = [
  ...identityRoutes,
  ...infrastructureRoutes,
  ...platformRoutes,
  ...computeRoutes,
  ...vmRoutes,
  ...networkRoutes,
  ...securityGroupRoutes,
  ...storageRoutes,
  ...volumeRoutes,
  ...simulatorRoutes,
];
