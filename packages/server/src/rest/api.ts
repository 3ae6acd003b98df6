import type { ApiRoute } from "@tstack/api";
import type { Transaction } from "kysely";
import type { Core } from "../core/core.js";
import type { Database } from "../db/schema.js";
import type { Caller } from "../identity/sessions.js";

/** One validated API request, as handlers see it. */
export interface ApiCall {
  route: ApiRoute;
  caller: Caller;
  /** The validated `params` or action object; query-string parameters for sync GETs. */
  params: Record<string, unknown>;
  /** URL path variables such as `uuid`. */
  path: Record<string, string>;
  query: Record<string, string | string[] | undefined>;
  systemTags: string[];
  userTags: string[];
  requestId: string;
  clientIp: string;
  /** Set for async APIs. */
  jobUuid?: string;
  /** Aborted when the job is cancelled or passes its deadline. */
  signal: AbortSignal;
  progress(percent: number, text: string): Promise<void>;
  /**
   * Runs `work` in one transaction that also ends the job with the body `work` returns, so the
   * state change and the job's result commit together.
   */
  commit(work: (tx: Transaction<Database>) => Promise<unknown>): Promise<unknown>;
}

/** What a route does. `check` runs before the 202, so what it rejects answers at once. */
export interface ApiHandler {
  check?(core: Core, call: ApiCall): Promise<void>;
  run(core: Core, call: ApiCall): Promise<unknown>;
  /** Key of the per-resource queue the job runs in; the path uuid when unset. */
  queueKey?(call: ApiCall): string | undefined;
}

export type ApiHandlers = Record<string, ApiHandler>;
