import type { FastifyInstance } from "fastify";
import { clusterHandlers } from "./compute/clusters.js";
import { hostModule } from "./compute/hosts/module.js";
import { offeringHandlers } from "./compute/offerings.js";
import { vmModule } from "./compute/vms/module.js";
import { registerZoneWorkflows, zoneHandlers } from "./compute/zones.js";
import type { Core } from "./core/core.js";
import { identityHandlers } from "./identity/api.js";
import type { SessionService } from "./identity/sessions.js";
import { monitoringModule } from "./monitoring/module.js";
import { networkModule } from "./network/module.js";
import { securityGroupModule } from "./network/security-groups-module.js";
import { configHandlers } from "./platform/config-api.js";
import { jobHandlers } from "./platform/jobs-api.js";
import { nodeHandlers } from "./platform/nodes.js";
import { tagHandlers } from "./platform/tags.js";
import { webHookHandlers } from "./platform/webhooks.js";
import type { ApiHandlers } from "./rest/api.js";
import { simulatorModule } from "./simulator/module.js";
import { storageModule } from "./storage/module.js";

/** Handlers, routes and background tasks one domain module adds to the management node. */
export interface Module {
  handlers: ApiHandlers;
  /** Registers workflows, background tasks and bus services; runs before recovery. */
  register?(core: Core): void | Promise<void>;
  /** Adds routes outside the ZStack API, such as the agents' callback route. */
  routes?(app: FastifyInstance): void;
  /**
   * Finishes what a crash left half done outside workflows, after workflow recovery and before
   * the node accepts requests.
   */
  recover?(): Promise<void>;
  /** Starts background tasks once the gateway listens. */
  start?(): void;
  /** Stops background tasks at shutdown. */
  stop?(): void | Promise<void>;
}

/** Returns every domain module, in start-up order. Add a module here and its routes in packages/api. */
export function modules(sessions: SessionService, version: string): Module[] {
  return [
    { handlers: identityHandlers(sessions) },
    { handlers: zoneHandlers, register: registerZoneWorkflows },
    { handlers: clusterHandlers },
    { handlers: offeringHandlers },
    { handlers: configHandlers },
    { handlers: tagHandlers },
    { handlers: webHookHandlers },
    { handlers: jobHandlers },
    { handlers: nodeHandlers(version) },
    hostModule(),
    vmModule(),
    networkModule(),
    securityGroupModule(),
    storageModule(),
    monitoringModule(),
    simulatorModule(),
  ];
}
