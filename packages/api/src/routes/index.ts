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
import { zwatchRoutes } from "./zwatch.js";

export {
  type ApiKind,
  type ApiRoute,
  crud,
  type Declared,
  stateEventEnableDisable,
  update,
} from "./declare.js";
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
  zwatchRoutes,
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
  ...zwatchRoutes,
  ...simulatorRoutes,
];

/**
 * Every API with its literal name and schemas, for clients that type calls by name. A route
 * list declared as plain `ApiRoute[]` adds only `string` names, which clients type loosely.
 */
export type DeclaredRoute =
  | (typeof identityRoutes)[number]
  | (typeof infrastructureRoutes)[number]
  | (typeof platformRoutes)[number]
  | (typeof computeRoutes)[number]
  | (typeof vmRoutes)[number]
  | (typeof networkRoutes)[number]
  | (typeof securityGroupRoutes)[number]
  | (typeof storageRoutes)[number]
  | (typeof volumeRoutes)[number]
  | (typeof zwatchRoutes)[number]
  | (typeof simulatorRoutes)[number];
