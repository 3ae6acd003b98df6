import { type TSchema, Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, StateEvent, Strict, Uuid } from "./common.js";
import * as Inventory from "./inventories.js";

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

const stateEventEnableDisable = Strict({ stateEvent: StateEvent(["enable", "disable"]) });

const update = Strict({ name: Type.Optional(Name), description: Type.Optional(Description) });

/** Declares the five standard routes of a resource that lives at one collection path. */
function crud(options: {
  resource: string;
  api: string;
  path: string;
  inventory: TSchema;
  create?: TSchema;
  update?: TSchema;
  changeState?: boolean;
  adminOnly?: boolean;
}): ApiRoute[] {
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

  return routes;
}

const Password = Type.String({
  minLength: 1,
  maxLength: 255,
  description: "SHA-512 hex of the password",
});

export const identityRoutes: ApiRoute[] = [
  {
    name: "logInByAccount",
    method: "PUT",
    path: "/accounts/login",
    kind: "sync",
    public: true,
    params: Strict({ accountName: Name, password: Password }),
    inventory: Inventory.SessionInventory,
    summary: "Log in as an account",
  },
  {
    name: "logInByUser",
    method: "PUT",
    path: "/accounts/users/login",
    kind: "sync",
    public: true,
    params: Strict({
      accountName: Type.Optional(Name),
      accountUuid: Type.Optional(Uuid),
      userName: Name,
      password: Password,
    }),
    inventory: Inventory.SessionInventory,
    summary: "Log in as a user of an account",
  },
  {
    name: "logOut",
    method: "DELETE",
    path: "/accounts/sessions/{sessionUuid}",
    kind: "sync",
    public: true,
    summary: "Log out a session",
  },
  {
    name: "renewSession",
    method: "PUT",
    path: "/accounts/sessions/{sessionUuid}/renew",
    kind: "sync",
    public: true,
    params: Strict({ duration: Type.Optional(Type.Integer({ minimum: 60, maximum: 31_536_000 })) }),
    inventory: Inventory.SessionInventory,
    summary: "Extend a session",
  },
  {
    name: "validateSession",
    method: "GET",
    path: "/accounts/sessions/{sessionUuid}/valid",
    kind: "sync",
    public: true,
    summary: "Check whether a session is valid",
  },
  ...crud({
    resource: "Account",
    api: "Account",
    path: "/accounts",
    inventory: Inventory.AccountInventory,
    adminOnly: true,
    create: Strict({
      name: Name,
      password: Password,
      type: Type.Optional(StateEvent(["Normal", "SystemAdmin"])),
      description: Type.Optional(Description),
      ...CreateCommon,
    }),
    update: Strict({
      name: Type.Optional(Name),
      description: Type.Optional(Description),
      password: Type.Optional(Password),
    }),
  }),
  ...crud({
    resource: "User",
    api: "User",
    path: "/accounts/users",
    inventory: Inventory.UserInventory,
    create: Strict({
      name: Name,
      password: Password,
      description: Type.Optional(Description),
      ...CreateCommon,
    }),
    update: Strict({
      name: Type.Optional(Name),
      description: Type.Optional(Description),
      password: Type.Optional(Password),
    }),
  }),
  {
    name: "queryQuota",
    method: "GET",
    path: "/accounts/quotas",
    kind: "query",
    resource: "Quota",
    inventory: Inventory.QuotaInventory,
    summary: "Query quotas",
  },
  {
    name: "updateQuota",
    method: "PUT",
    path: "/accounts/quotas/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({
      identityUuid: Uuid,
      name: Type.String({ minLength: 1, maxLength: 255 }),
      value: Type.Integer({ minimum: 0 }),
    }),
    inventory: Inventory.QuotaInventory,
    summary: "Change an account's quota",
  },
  {
    name: "queryAudit",
    method: "GET",
    path: "/audits",
    kind: "query",
    resource: "Audit",
    adminOnly: true,
    inventory: Inventory.AuditInventory,
    summary: "Query the audit records of write APIs",
  },
];

export const infrastructureRoutes: ApiRoute[] = [
  ...crud({
    resource: "Zone",
    api: "Zone",
    path: "/zones",
    inventory: Inventory.ZoneInventory,
    adminOnly: true,
    changeState: true,
    create: Strict({ name: Name, description: Type.Optional(Description), ...CreateCommon }),
  }),
  ...crud({
    resource: "Cluster",
    api: "Cluster",
    path: "/clusters",
    inventory: Inventory.ClusterInventory,
    adminOnly: true,
    changeState: true,
    create: Strict({
      zoneUuid: Uuid,
      name: Name,
      description: Type.Optional(Description),
      hypervisorType: StateEvent([...Inventory.HypervisorTypes]),
      type: Type.Optional(Type.Literal("zstack")),
      ...CreateCommon,
    }),
  }),
  ...crud({
    resource: "InstanceOffering",
    api: "InstanceOffering",
    path: "/instance-offerings",
    inventory: Inventory.InstanceOfferingInventory,
    adminOnly: true,
    changeState: true,
    create: Strict({
      name: Name,
      description: Type.Optional(Description),
      cpuNum: Type.Integer({ minimum: 1, maximum: 1024 }),
      memorySize: Type.Integer({
        minimum: 16 * 1024 * 1024,
        maximum: 16 * 1024 ** 4,
        description: "bytes",
      }),
      cpuSpeed: Type.Optional(Type.Integer({ minimum: 0 })),
      sortKey: Type.Optional(Type.Integer()),
      allocatorStrategy: Type.Optional(Type.String({ maxLength: 255 })),
      type: Type.Optional(Type.Literal("UserVm")),
      ...CreateCommon,
    }),
  }),
  ...crud({
    resource: "DiskOffering",
    api: "DiskOffering",
    path: "/disk-offerings",
    inventory: Inventory.DiskOfferingInventory,
    adminOnly: true,
    changeState: true,
    create: Strict({
      name: Name,
      description: Type.Optional(Description),
      diskSize: Type.Integer({ minimum: 1024 * 1024, maximum: 1024 ** 5, description: "bytes" }),
      sortKey: Type.Optional(Type.Integer()),
      allocatorStrategy: Type.Optional(Type.String({ maxLength: 255 })),
      type: Type.Optional(Type.String({ maxLength: 255 })),
      ...CreateCommon,
    }),
  }),
];

export const platformRoutes: ApiRoute[] = [
  {
    name: "queryGlobalConfig",
    method: "GET",
    path: "/global-configurations",
    kind: "query",
    resource: "GlobalConfig",
    inventory: Inventory.GlobalConfigInventory,
    summary: "Query global configuration",
  },
  {
    name: "updateGlobalConfig",
    method: "PUT",
    path: "/global-configurations/{category}/{name}/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({ value: Type.String({ maxLength: 65536 }) }),
    inventory: Inventory.GlobalConfigInventory,
    summary: "Change a global configuration value",
  },
  {
    name: "resetGlobalConfig",
    method: "PUT",
    path: "/global-configurations/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({}),
    summary: "Reset every global configuration to its default",
  },
  {
    name: "queryResourceConfig",
    method: "GET",
    path: "/resource-configurations",
    kind: "query",
    resource: "ResourceConfig",
    summary: "Query per-resource configuration overrides",
  },
  {
    name: "updateResourceConfig",
    method: "PUT",
    path: "/resource-configurations/{category}/{name}/{resourceUuid}/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({ value: Type.String({ maxLength: 65536 }) }),
    summary: "Override a global configuration for one resource",
  },
  {
    name: "deleteResourceConfig",
    method: "DELETE",
    path: "/resource-configurations/{category}/{name}/{resourceUuid}",
    kind: "delete",
    adminOnly: true,
    summary: "Remove a per-resource override",
  },
  {
    name: "createSystemTag",
    method: "POST",
    path: "/system-tags",
    kind: "create",
    params: Strict({
      resourceType: Type.String({ minLength: 1, maxLength: 255 }),
      resourceUuid: Uuid,
      tag: Type.String({ minLength: 1, maxLength: 4096 }),
    }),
    inventory: Inventory.TagInventory,
    summary: "Attach a system tag to a resource",
  },
  {
    name: "createUserTag",
    method: "POST",
    path: "/user-tags",
    kind: "create",
    params: Strict({
      resourceType: Type.String({ minLength: 1, maxLength: 255 }),
      resourceUuid: Uuid,
      tag: Type.String({ minLength: 1, maxLength: 4096 }),
    }),
    inventory: Inventory.TagInventory,
    summary: "Attach a user tag to a resource",
  },
  {
    name: "querySystemTag",
    method: "GET",
    path: "/system-tags",
    kind: "query",
    resource: "SystemTag",
    inventory: Inventory.TagInventory,
    summary: "Query system tags",
  },
  {
    name: "queryUserTag",
    method: "GET",
    path: "/user-tags",
    kind: "query",
    resource: "UserTag",
    inventory: Inventory.TagInventory,
    summary: "Query user tags",
  },
  {
    name: "deleteTag",
    method: "DELETE",
    path: "/tags/{uuid}",
    kind: "delete",
    summary: "Delete a system or user tag",
  },
  ...crud({
    resource: "WebHook",
    api: "WebHook",
    path: "/web-hooks",
    inventory: Inventory.WebHookInventory,
    create: Strict({
      name: Name,
      description: Type.Optional(Description),
      url: Type.String({ minLength: 8, maxLength: 2048, pattern: "^https?://" }),
      type: Type.Literal("CanonicalEvent"),
      opaque: Type.Optional(
        Type.String({ maxLength: 1024, description: "event path glob, such as /vm/**" }),
      ),
      secret: Type.Optional(
        Type.String({
          minLength: 16,
          maxLength: 256,
          description: "HMAC-SHA256 key for the X-Tstack-Signature header",
        }),
      ),
      ...CreateCommon,
    }),
    update: Strict({
      name: Type.Optional(Name),
      description: Type.Optional(Description),
      url: Type.Optional(Type.String({ minLength: 8, maxLength: 2048, pattern: "^https?://" })),
      opaque: Type.Optional(Type.String({ maxLength: 1024 })),
    }),
  }),
  {
    name: "queryManagementNode",
    method: "GET",
    path: "/management-nodes",
    kind: "query",
    resource: "ManagementNode",
    inventory: Inventory.ManagementNodeInventory,
    adminOnly: true,
    summary: "Query management nodes",
  },
  {
    name: "getVersion",
    method: "PUT",
    path: "/management-nodes/actions",
    kind: "sync",
    params: Strict({}),
    summary: "Return the management node version",
  },
  {
    name: "queryApiJob",
    method: "GET",
    path: "/api-jobs",
    kind: "query",
    resource: "ApiJob",
    inventory: Inventory.ApiJobInventory,
    summary: "Query async API jobs",
  },
  {
    name: "cancelApiJob",
    method: "PUT",
    path: "/api-jobs/{uuid}/actions",
    kind: "sync",
    params: Strict({}),
    summary: "Cancel a running async API job",
  },
];

/** Every API of the contract. */
export const apiRoutes: ApiRoute[] = [
  ...identityRoutes,
  ...infrastructureRoutes,
  ...platformRoutes,
];
