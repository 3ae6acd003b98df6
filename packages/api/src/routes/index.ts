import { computeRoutes } from "./compute.js";
import type { ApiRoute } from "./declare.js";
import { identityRoutes } from "./identity.js";
import { infrastructureRoutes } from "./infrastructure.js";
import { platformRoutes } from "./platform.js";
import { storageRoutes } from "./storage.js";

export { type ApiKind, type ApiRoute, crud, stateEventEnableDisable, update } from "./declare.js";
export { computeRoutes, identityRoutes, infrastructureRoutes, platformRoutes, storageRoutes };

/** Every API of the contract. */
export const apiRoutes: ApiRoute[] = [
  ...identityRoutes,
  ...infrastructureRoutes,
  ...platformRoutes,
  ...computeRoutes,
  ...storageRoutes,
];
