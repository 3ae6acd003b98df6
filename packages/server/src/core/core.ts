import type { Kysely, Transaction } from "kysely";
import type { Logger } from "pino";
import type { Services } from "../compute/vm-resources.js";
import type { Db } from "../db/connect.js";
import type { Database } from "../db/schema.js";
import type { AgentClient } from "../drivers/agent-client.js";
import type { Bus } from "./bus.js";
import { type Relay, relayDueAfter } from "./events.js";
import type { GlobalConfig } from "./global-config.js";
import type { JobService } from "./jobs.js";
import type { KeyedQueue } from "./queues.js";
import type { SecretBox } from "./secrets.js";
import type { WorkflowEngine } from "./workflow.js";

/** The machinery every service of the management node shares. */
export interface Core {
  nodeUuid: string;
  dataDir: string;
  /** Port the REST gateway listens on; agents post callbacks and reports to it. */
  port: number;
  secrets: SecretBox;
  /** Signed commands to host agents. */
  agents: AgentClient;
  /** Contracts one module offers another, filled in at registration. */
  services: Services;
  db: Db;
  kysely: Kysely<Database>;
  bus: Bus;
  queues: KeyedQueue;
  relay: Relay;
  jobs: JobService;
  workflows: WorkflowEngine;
  config: GlobalConfig;
  log: Logger;
  /** Runs `work` in one transaction and hands what it queued to the relay after the commit. */
  transact<T>(work: (tx: Transaction<Database>) => Promise<T>): Promise<T>;
}

/** Builds `Core.transact` over a database and a relay. */
export function transactor(kysely: Kysely<Database>, relay: Relay) {
  return async <T>(work: (tx: Transaction<Database>) => Promise<T>): Promise<T> => {
    let due = false;
    const result = await kysely.transaction().execute(async (tx) => {
      const value = await work(tx);
      due = relayDueAfter(tx);
      return value;
    });

    // A pass costs two queries. A VM create commits about seven transactions, and about
    // three of them queue nothing.
    if (due) {
      relay.kick();
    }

    return result;
  };
}
