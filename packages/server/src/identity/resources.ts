import { commonFields, commonInventory, defineResource } from "../resources/registry.js";

defineResource({
  type: "Account",
  table: "accounts",
  key: "uuid",
  visibility: "owner",
  ownerColumn: "uuid",
  taggable: true,
  fields: { ...commonFields, type: "string", state: "string" },
  toInventory: (row) => commonInventory(row, { type: row.type, state: row.state }),
});

defineResource({
  type: "User",
  table: "users",
  key: "uuid",
  visibility: "owner",
  taggable: true,
  fields: { ...commonFields, accountUuid: "string", state: "string" },
  relations: { account: { resource: "Account", local: "accountUuid", foreign: "uuid" } },
  toInventory: (row) =>
    commonInventory(row, {
      accountUuid: row.accountUuid,
      state: row.state,
    }),
});

defineResource({
  type: "Quota",
  table: "quotas",
  key: "uuid",
  visibility: "owner",
  ownerColumn: "identityUuid",
  fields: {
    uuid: "string",
    name: "string",
    identityUuid: "string",
    identityType: "string",
    value: "number",
    createDate: "date",
    lastOpDate: "date",
  },
  toInventory: (row) => ({ ...row, value: Number(row.value) }),
});

defineResource({
  type: "Audit",
  table: "audits",
  key: "uuid",
  visibility: "admin",
  fields: {
    uuid: "string",
    accountUuid: "string",
    userUuid: "string",
    apiName: "string",
    resourceUuid: "string",
    requestId: "string",
    jobUuid: "string",
    success: "boolean",
    error: "string",
    clientIp: "string",
    createDate: "date",
    finishDate: "date",
  },
  toInventory: (row) => ({ ...row, success: row.success === null ? null : Boolean(row.success) }),
});
