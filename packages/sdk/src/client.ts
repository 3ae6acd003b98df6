import { randomUUID } from "node:crypto";
import type { Static, TSchema } from "@sinclair/typebox";
import {
  type ApiRoute,
  apiRoutes,
  type DeclaredRoute,
  type Inventory,
  sha512Hex,
} from "@tstack/api";
import { ApiRequestError, ConnectionError, checked, isNetworkFailure } from "./errors.js";
import { type CanonicalEvent, type EventStreamOptions, followEvents } from "./events.js";
import { appendQuery, readBody, sleep } from "./http.js";

type SessionInventory = Inventory.SessionInventory;

export interface ClientOptions {
  /** Base URL such as `http://127.0.0.1:8080`. */
  endpoint: string;
  session?: string;
  /** Milliseconds between polls of an async job; 200 by default. */
  pollIntervalMs?: number;
  /** Retries of a request whose connection failed; 2 by default. Only reads and jobs retry. */
  retries?: number;
  /** Milliseconds before the first retry, doubled for each next one; 200 by default. */
  retryDelayMs?: number;
}

/** Progress of a running job, as `GET /api-jobs` reports it. */
export interface JobProgress {
  uuid: string;
  /** Percent from 0 to 100, or null when the job reports none. */
  progress: number | null;
  progressText: string | null;
}

export interface CallOptions {
  /** URL path variables such as `uuid`. */
  path?: Record<string, string>;
  /** The body object (`params` or the action's object) or the query string of GET and DELETE. */
  params?: Record<string, unknown>;
  query?: Record<string, string | string[] | number | boolean | undefined>;
  systemTags?: string[];
  userTags?: string[];
  /** Extra request headers, such as `X-Job-UUID`, `X-Web-Hook` or `X-API-Timeout`. */
  headers?: Record<string, string>;
  /** Key of a write, reused on its retries; a random UUID when unset. */
  idempotencyKey?: string;
  /** Return the 202 body (`location`, `apiTimeout`) instead of waiting for the job. */
  noWait?: boolean;
  /** Called while a job runs, each time its progress changes. */
  onProgress?(job: JobProgress): void;
  /** Aborting stops the wait and requests that the server cancel the job (`cancelApiJob`). */
  signal?: AbortSignal;
}

/** The schema in an optional route field, or `undefined` when the route has none. */
type SchemaIn<T> = NonNullable<T> extends TSchema ? NonNullable<T> : undefined;

/** The parameter type of a route whose schema type is known statically, else a loose record. */
export type ParamsOf<R> = R extends { params?: infer P }
  ? SchemaIn<P> extends TSchema
    ? unknown extends Static<SchemaIn<P>>
      ? Record<string, unknown>
      : Static<SchemaIn<P>>
    : Record<string, unknown>
  : Record<string, unknown>;

/** Call options whose `params` are checked against the route's TypeBox schema. */
export type TypedCallOptions<R> = Omit<CallOptions, "params"> & {
  params?: ParamsOf<R>;
};

/** A declared route by its API name. */
export type RouteNamed<N extends string> = Extract<DeclaredRoute, { name: N }>;

/** The names of the APIs declared with literal types. */
export type ApiName = DeclaredRoute["name"];

/** The reply of a route: the inventories of a query, the inventory of a write, else a record. */
export type ReplyOf<R> = R extends { kind: "query"; inventory?: infer I }
  ? SchemaIn<I> extends TSchema
    ? { inventories: Static<SchemaIn<I>>[]; total?: number }
    : Record<string, unknown>
  : R extends { kind: "create" | "action"; inventory?: infer I }
    ? SchemaIn<I> extends TSchema
      ? { inventory: Static<SchemaIn<I>> }
      : Record<string, unknown>
    : Record<string, unknown>;

/** The 202 body of a job started with `noWait`: where to poll it and its timeout in seconds. */
export interface JobAccepted {
  location: string;
  apiTimeout?: number;
}

/**
 * One method per declared API, its params and reply typed from the route's schemas. With
 * `noWait: true` the method returns the job's 202 body instead of its result.
 */
export type TypedApi = {
  [N in ApiName]: {
    (options: TypedCallOptions<RouteNamed<N>> & { noWait: true }): Promise<JobAccepted>;
    (options?: TypedCallOptions<RouteNamed<N>>): Promise<ReplyOf<RouteNamed<N>>>;
  };
};

const routesByName = new Map(apiRoutes.map((route) => [route.name, route]));

/** Returns whether the route runs as an async job: creates, actions and deletes. */
export function isJobRoute(route: ApiRoute) {
  return route.kind === "create" || route.kind === "action" || route.kind === "delete";
}

/**
 * A client of the ZStack v1 REST contract: logs in with the SHA-512 password, sends
 * `Authorization: OAuth <session>`, polls async jobs to their end, and retries writes that lost
 * their connection with the same `Idempotency-Key`, so the server runs them once.
 */
export class TstackClient {
  readonly endpoint: string;
  session: string | undefined;
  private readonly pollIntervalMs: number;
  private readonly retries: number;
  private readonly retryDelayMs: number;

  /**
   * The APIs as typed methods: `client.api.createZone({ params: { name } })` checks the params
   * against the route's schema and returns the typed inventory.
   */
  readonly api: TypedApi = new Proxy({} as TypedApi, {
    get: (_target, name) =>
      typeof name === "string" && routesByName.has(name)
        ? (options?: CallOptions) => this.call(name, options)
        : undefined,
  });

  constructor(options: ClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    this.session = options.session;
    this.pollIntervalMs = options.pollIntervalMs ?? 200;
    this.retries = options.retries ?? 2;
    this.retryDelayMs = options.retryDelayMs ?? 200;
  }

  async logInByAccount(accountName: string, password: string) {
    const reply = await this.call<{ inventory: SessionInventory }>("logInByAccount", {
      params: { accountName, password: sha512Hex(password) },
    });
    this.session = reply.inventory.uuid;
    return reply.inventory;
  }

  async logInByUser(accountName: string, userName: string, password: string) {
    const reply = await this.call<{ inventory: SessionInventory }>("logInByUser", {
      params: { accountName, userName, password: sha512Hex(password) },
    });
    this.session = reply.inventory.uuid;
    return reply.inventory;
  }

  async logOut() {
    if (this.session) {
      await this.call("logOut", { path: { sessionUuid: this.session } });
      this.session = undefined;
    }
  }

  /** Extends the session by `durationSeconds`, or by `identity.session.timeout` when unset. */
  async renewSession(durationSeconds?: number) {
    const reply = await this.call<{ inventory: SessionInventory }>("renewSession", {
      path: { sessionUuid: this.requireSession() },
      params: durationSeconds === undefined ? {} : { duration: durationSeconds },
    });
    return reply.inventory;
  }

  /** Returns whether the server still accepts the session. */
  async validateSession() {
    const reply = await this.call<{ valid: boolean }>("validateSession", {
      path: { sessionUuid: this.requireSession() },
    });
    return reply.valid;
  }

  /** Calls an API by name and returns its result body, waiting for async jobs. */
  async call<T = Record<string, unknown>>(name: string, options: CallOptions = {}): Promise<T> {
    const route = routesByName.get(name);

    if (!route) {
      throw new Error(`unknown API '${name}': it is not declared in @tstack/api apiRoutes`);
    }

    return this.invoke(route, options) as Promise<T>;
  }

  /** Calls a declared route; `params` are typed by its schema when the route's type is literal. */
  async invoke<R extends ApiRoute>(route: R, options: TypedCallOptions<R> = {}): Promise<unknown> {
    const response = await this.send(route, options as CallOptions);
    const body = await readBody(response);

    if (response.status === 202 && isJobRoute(route)) {
      const location = (body as { location: string }).location;
      return options.noWait ? body : await this.waitForJob(location, options);
    }

    return checked(response.status, body);
  }

  /** Queries a resource collection with `q=` conditions. */
  async query<T = Record<string, unknown>>(
    name: string,
    conditions: string[] = [],
    query: CallOptions["query"] = {},
  ) {
    return this.call<{ inventories: T[]; total?: number }>(name, {
      query: { ...query, q: conditions },
    });
  }

  /**
   * Polls a job location until it ends; returns the result or throws its error. When the signal
   * aborts, sends `cancelApiJob` for the job and throws the abort reason.
   */
  async waitForJob(location: string, options: Pick<CallOptions, "signal" | "onProgress"> = {}) {
    const jobUuid = jobUuidOf(location);

    try {
      return await this.pollJob(jobUuid, options);
    } catch (error) {
      if (options.signal?.aborted) {
        await this.cancelJob(jobUuid);
      }

      throw error;
    }
  }

  /**
   * Asks the server to cancel a running job; its workflow rolls back at the next step. Returns
   * false when the job had already ended or expired.
   */
  async cancelJob(jobUuid: string) {
    try {
      await this.call("cancelApiJob", { path: { uuid: jobUuid } });
      return true;
    } catch (error) {
      if (error instanceof ApiRequestError && ["SYS.1013", "SYS.1003"].includes(error.code)) {
        return false;
      }

      throw error;
    }
  }

  /** Follows `GET /events` as an async iterator; see `followEvents`. */
  events(options: EventStreamOptions = {}): AsyncGenerator<CanonicalEvent> {
    return followEvents({ endpoint: this.endpoint, headers: () => this.headers() }, options);
  }

  private async pollJob(jobUuid: string, options: Pick<CallOptions, "signal" | "onProgress">) {
    const url = `${this.endpoint}/zstack/v1/api-jobs/${jobUuid}`;
    let reported = "";

    for (;;) {
      options.signal?.throwIfAborted();
      const response = await this.fetchWithRetry(url, {
        headers: this.headers(),
        signal: options.signal,
      });
      const body = await readBody(response);

      // A restarting node returns SYS.1010 until its recovery ends, and the job keeps running.
      if (response.status === 503 && errorCode(body) === "SYS.1010") {
        await sleep(this.pollIntervalMs, options.signal);
        continue;
      }

      if (response.status !== 202) {
        return checked(response.status, body);
      }

      if (options.onProgress) {
        reported = await this.reportProgress(jobUuid, reported, options.onProgress);
      }

      await sleep(this.pollIntervalMs, options.signal);
    }
  }

  private async reportProgress(
    jobUuid: string,
    reported: string,
    onProgress: (job: JobProgress) => void,
  ) {
    const jobs = await this.query<JobProgress>("queryApiJob", [`uuid=${jobUuid}`]);
    const job = jobs.inventories[0];
    const current = JSON.stringify([job?.progress, job?.progressText]);

    if (job && current !== reported) {
      onProgress({ uuid: jobUuid, progress: job.progress, progressText: job.progressText });
    }

    return current;
  }

  private send(route: ApiRoute, options: CallOptions) {
    const url = new URL(`${this.endpoint}/zstack/v1${this.pathOf(route, options)}`);
    const headers = { ...this.headers(), ...options.headers };
    let body: string | undefined;

    if (route.method === "GET" || route.method === "DELETE") {
      appendQuery(url, { ...options.params, ...options.query });
    } else {
      const key = route.kind === "create" ? "params" : route.name;
      body = JSON.stringify({
        [key]: options.params ?? {},
        systemTags: options.systemTags,
        userTags: options.userTags,
      });
      headers["content-type"] = "application/json";
    }

    if (isJobRoute(route) && !hasHeader(headers, "idempotency-key")) {
      headers["idempotency-key"] = options.idempotencyKey ?? randomUUID();
    }

    // A job carries an Idempotency-Key, so resending it cannot run it twice; a GET is safe.
    const retryable = route.method === "GET" || isJobRoute(route);
    const init = { method: route.method, headers, body, signal: options.signal };
    return this.fetchWithRetry(url.toString(), init, retryable);
  }

  private pathOf(route: ApiRoute, options: CallOptions) {
    const path = route.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
      const value = options.path?.[name];

      if (value === undefined) {
        throw new Error(`${route.name} needs the path variable '${name}'; pass it in options.path`);
      }

      return encodeURIComponent(value);
    });
    const byUuid =
      route.kind === "query" && options.path?.uuid
        ? `/${encodeURIComponent(options.path.uuid)}`
        : "";
    return `${path}${byUuid}`;
  }

  private async fetchWithRetry(url: string, init: RequestInit, retryable = true) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await fetch(url, init);
      } catch (error) {
        const signal = init.signal ?? undefined;

        if (!isNetworkFailure(error) || signal?.aborted) {
          throw error;
        }

        if (!retryable || attempt >= this.retries) {
          throw new ConnectionError(url, error);
        }

        await sleep(this.retryDelayMs * 2 ** attempt, signal);
      }
    }
  }

  private headers(): Record<string, string> {
    return this.session ? { authorization: `OAuth ${this.session}` } : {};
  }

  private requireSession() {
    if (!this.session) {
      throw new Error("no session: log in first with logInByAccount or logInByUser");
    }

    return this.session;
  }
}

function jobUuidOf(location: string) {
  const jobUuid = location.split("/zstack/v1/api-jobs/")[1];

  if (!jobUuid) {
    throw new Error(`invalid job location '${location}': expected .../zstack/v1/api-jobs/<uuid>`);
  }

  return jobUuid;
}

function hasHeader(headers: Record<string, string>, name: string) {
  return Object.keys(headers).some((key) => key.toLowerCase() === name);
}

function errorCode(body: unknown) {
  return (body as { error?: { code?: unknown } } | undefined)?.error?.code;
}
