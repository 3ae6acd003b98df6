import { Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, StateEvent, Strict, Uuid } from "../common.js";
import * as Inventory from "../inventories.js";
import { type ApiRoute, crud } from "./declare.js";

const Password = Type.String({
  minLength: 1,
  maxLength: 255,
  description: "SHA-512 hex of the password",
});

export const identityRoutes = [
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
] as const satisfies readonly ApiRoute[];
