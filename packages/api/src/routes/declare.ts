import { type TSchema, Type } from "@sinclair/typebox";
import { Description, Name, StateEvent, Strict } from "../common.js";

/** How an API travels over HTTP. */
export type ApiKind = "create" | "query" | "action" | "delete" | "sync";

/** One API of the REST contract, declared as data so server validation, OpenAPI and SDK agree. */
export interface ApiRoute {
  /** ZStack's API name without `API` and `Msg`, first letter lower-cased; also the action key. */
  name: string;
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** Path below `/zstack/v1`, with `{param}` variables. */
  path: string;
  kind: ApiKind;
  /** Body parameters (`params`, the action key's object), or query-string parameters for sync GETs. */
  params?: TSchema;
  /** Inventory schema of query results and of the `inventory` returned by writes. */
  inventory?: TSchema;
  /** The queryable resource, for query routes. */
  resource?: string;
  /** Only admin accounts may call it; normal accounts get ID.1002. */
  adminOnly?: boolean;
  /** Needs no session (login). */
  public?: boolean;
  /** API timeout in milliseconds when the caller gives none. */
  timeoutMs?: number;
  summary: string;
}

export const stateEventEnableDisable = Strict({ stateEvent: StateEvent(["enable", "disable"]) });

export const update = Strict({
  name: Type.Optional(Name),
  description: Type.Optional(Description),
});

/**
 * A route whose name, kind and schemas stay literal in its type, so that a client can type a
 * call by the API's name.
 */
export type Declared<
  N extends string,
  K extends ApiKind,
  P extends TSchema | undefined,
  I extends TSchema | undefined,
> = Omit<ApiRoute, "name" | "kind" | "params" | "inventory"> & {
  name: N;
  kind: K;
  params?: P;
  inventory?: I;
};

/** The routes `crud` declares, typed by the resource's API name and schemas. */
export type CrudRoutes<
  A extends string,
  I extends TSchema,
  C extends TSchema | undefined,
  U extends TSchema,
  S extends boolean,
> = Array<
  | Declared<`query${A}`, "query", undefined, I>
  | Declared<`delete${A}`, "delete", undefined, undefined>
  | Declared<`update${A}`, "action", U, I>
  | (C extends TSchema ? Declared<`create${A}`, "create", C, I> : never)
  | (S extends true
      ? Declared<`change${A}State`, "action", typeof stateEventEnableDisable, I>
      : never)
>;

/** Declares the five standard routes of a resource that lives at one collection path. */
export function crud<
  const A extends string,
  I extends TSchema,
  C extends TSchema | undefined = undefined,
  U extends TSchema = typeof update,
  S extends boolean = false,
>(options: {
  resource: string;
  api: A;
  path: string;
  inventory: I;
  create?: C;
  update?: U;
  changeState?: S;
  adminOnly?: boolean;
}): CrudRoutes<A, I, C, U, S> {
  const { resource, api, path, inventory } = options;
  const adminOnly = options.adminOnly ?? false;
  const routes: ApiRoute[] = [
    {
      name: `query${api}`,
      method: "GET",
      path,
      kind: "query",
      resource,
      inventory,
      summary: `Query ${resource} resources`,
    },
    {
      name: `delete${api}`,
      method: "DELETE",
      path: `${path}/{uuid}`,
      kind: "delete",
      resource,
      adminOnly,
      summary: `Delete a ${resource}`,
    },
    {
      name: `update${api}`,
      method: "PUT",
      path: `${path}/{uuid}/actions`,
      kind: "action",
      params: options.update ?? update,
      inventory,
      resource,
      adminOnly,
      summary: `Update a ${resource}`,
    },
  ];

  if (options.create) {
    routes.push({
      name: `create${api}`,
      method: "POST",
      path,
      kind: "create",
      params: options.create,
      inventory,
      resource,
      adminOnly,
      summary: `Create a ${resource}`,
    });
  }

  if (options.changeState) {
    routes.push({
      name: `change${api}State`,
      method: "PUT",
      path: `${path}/{uuid}/actions`,
      kind: "action",
      params: stateEventEnableDisable,
      inventory,
      resource,
      adminOnly,
      summary: `Enable or disable a ${resource}`,
    });
  }

  return routes as CrudRoutes<A, I, C, U, S>;
}
