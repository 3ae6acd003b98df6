import { type ApiRoute, apiRoutes, type ErrorBody, sha512Hex } from "@tstack/api";

/** An error the API answered, with ZStack's code, description, details and elaboration. */
export class ApiRequestError extends Error {
  readonly code: string;
  readonly description: string;
  readonly details: string;
  readonly elaboration?: string;

  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(`${body.code}: ${body.details}`);
    this.name = "ApiRequestError";
    this.code = body.code;
    this.description = body.description;
    this.details = body.details;
    this.elaboration = body.elaboration;
  }
}

export interface ClientOptions {
  /** Base URL such as `http://127.0.0.1:8080`. */
  endpoint: string;
  session?: string;
  /** Milliseconds between polls of an async job; 200 by default. */
  pollIntervalMs?: number;
}

export interface CallOptions {
  /** URL path variables such as `uuid`. */
  path?: Record<string, string>;
  /** The body object (`params` or the action's object) or the query string of GET and DELETE. */
  params?: Record<string, unknown>;
  query?: Record<string, string | string[] | number | boolean | undefined>;
  systemTags?: string[];
  userTags?: string[];
  /** Extra request headers, such as `X-Job-UUID`, `X-Web-Hook` or `Idempotency-Key`. */
  headers?: Record<string, string>;
  /** Return the 202 location instead of waiting for the job. */
  noWait?: boolean;
  onProgress?(job: { progress: number | null; progressText: string | null }): void;
  signal?: AbortSignal;
}

const routesByName = new Map(apiRoutes.map((route) => [route.name, route]));

/**
 * A client of the ZStack v1 REST contract: logs in with the SHA-512 password, sends
 * `Authorization: OAuth <session>`, and polls async jobs to their end.
 */
export class TstackClient {
  readonly endpoint: string;
  session: string | undefined;
  private readonly pollIntervalMs: number;

  constructor(options: ClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    this.session = options.session;
    this.pollIntervalMs = options.pollIntervalMs ?? 200;
  }

  async logInByAccount(accountName: string, password: string) {
    const reply = await this.call<{ inventory: { uuid: string } }>("logInByAccount", {
      params: { accountName, password: sha512Hex(password) },
    });
    this.session = reply.inventory.uuid;
    return reply.inventory;
  }

  async logInByUser(accountName: string, userName: string, password: string) {
    const reply = await this.call<{ inventory: { uuid: string } }>("logInByUser", {
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

  /** Calls an API by name and returns its result body, waiting for async jobs. */
  async call<T = Record<string, unknown>>(name: string, options: CallOptions = {}): Promise<T> {
    const route = routesByName.get(name);

    if (!route) {
      throw new Error(`unknown API ${name}`);
    }

    const response = await this.send(route, options);
    const body = await readBody(response);

    if (response.status === 202 && route.kind !== "query" && route.kind !== "sync") {
      const location = (body as { location: string }).location;
      return (options.noWait ? body : await this.waitForJob(location, options)) as T;
    }

    return checked(response.status, body) as T;
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

  /** Polls a job location until it ends; returns the result or throws its error. */
  async waitForJob(location: string, options: Pick<CallOptions, "signal" | "onProgress"> = {}) {
    const jobUuid = location.split("/zstack/v1/api-jobs/")[1];
    const url = `${this.endpoint}/zstack/v1/api-jobs/${jobUuid}`;

    for (;;) {
      options.signal?.throwIfAborted();
      const response = await fetch(url, { headers: this.headers(), signal: options.signal });
      const body = await readBody(response);

      if (response.status !== 202) {
        return checked(response.status, body);
      }

      if (options.onProgress) {
        const jobs = await this.call<{
          inventories: Array<{ progress: number | null; progressText: string | null }>;
        }>("queryApiJob", { query: { q: [`uuid=${jobUuid}`] } });
        const job = jobs.inventories[0];

        if (job) {
          options.onProgress(job);
        }
      }

      await new Promise((resolve) => setTimeout(resolve, this.pollIntervalMs));
    }
  }

  private send(route: ApiRoute, options: CallOptions) {
    const path = route.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
      const value = options.path?.[name];

      if (value === undefined) {
        throw new Error(`${route.name} needs the path variable ${name}`);
      }

      return encodeURIComponent(value);
    });
    const byUuid =
      route.kind === "query" && options.path?.uuid
        ? `/${encodeURIComponent(options.path.uuid)}`
        : "";
    const url = new URL(`${this.endpoint}/zstack/v1${path}${byUuid}`);
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

    return fetch(url, { method: route.method, headers, body, signal: options.signal });
  }

  private headers(): Record<string, string> {
    return this.session ? { authorization: `OAuth ${this.session}` } : {};
  }
}

function appendQuery(url: URL, query: Record<string, unknown>) {
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) {
      continue;
    }

    for (const item of Array.isArray(value) ? value : [value]) {
      url.searchParams.append(key, String(item));
    }
  }
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();

  try {
    return text ? JSON.parse(text) : {};
  } catch {
    return { text };
  }
}

function checked(status: number, body: unknown) {
  const error = (body as { error?: ErrorBody }).error;

  if (status >= 400 || error) {
    const fallback = {
      code: `HTTP.${status}`,
      description: "HTTP error",
      details: (body as { text?: string }).text ?? JSON.stringify(body),
    };
    throw new ApiRequestError(status, error ?? fallback);
  }

  return body;
}
