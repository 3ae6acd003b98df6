import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import type { Executor } from "../core/events.js";
import { newUuid, now, UUID_PATTERN } from "../core/ids.js";
import {
  deleteResourceRow,
  insertResource,
  loadResource,
  queryHandler,
  updateResource,
} from "../resources/crud.js";
import { resourceDefinition } from "../resources/registry.js";
import type { ApiHandler, ApiHandlers } from "../rest/api.js";
import { hashPassword, verifyPassword } from "./passwords.js";
import { insertDefaultQuotas, quotaDefinition } from "./quotas.js";
import { type SessionService, sessionInventory } from "./sessions.js";
import "./resources.js";

const SHA512_HEX = /^[0-9a-f]{128}$/;

function checkPasswordHash(password: unknown, field: string) {
  if (typeof password !== "string" || !SHA512_HEX.test(password)) {
    throw new ApiError(
      "invalidArgument",
      `${field}: expected the SHA-512 hex of the password (128 lower-case hex characters), as ZStack clients send it`,
    );
  }
}

/** Identity APIs: login, sessions, accounts, users, quotas and the audit query. */
export function identityHandlers(sessions: SessionService): ApiHandlers {
  return {
    logInByAccount: { run: (core, call) => logInByAccount(core, sessions, call.params) },
    logInByUser: { run: (core, call) => logInByUser(core, sessions, call.params) },
    logOut: {
      async run(_core, call) {
        await sessions.remove(sessionPath(call.path.sessionUuid));
        return {};
      },
    },
    renewSession: {
      async run(_core, call) {
        const session = await sessions.renew(
          sessionPath(call.path.sessionUuid),
          call.params.duration as number | undefined,
        );
        return { inventory: sessionInventory(session) };
      },
    },
    validateSession: {
      async run(_core, call) {
        try {
          await sessions.authenticate(sessionPath(call.path.sessionUuid));
          return { valid: true };
        } catch {
          return { valid: false };
        }
      },
    },
    queryAccount: queryHandler("Account"),
    createAccount,
    updateAccount: updateWithPassword("Account"),
    deleteAccount: deleteAccount(sessions),
    queryUser: queryHandler("User"),
    createUser,
    updateUser: updateWithPassword("User"),
    deleteUser: {
      check: async (core, call) =>
        void (await loadResource(core.kysely, "User", call.path.uuid!, call.caller)),
      async run(_core, call) {
        await call.commit(async (tx) => {
          const user = await loadResource(tx, "User", call.path.uuid!, call.caller);
          await tx.deleteFrom("sessions").where("userUuid", "=", String(user.uuid)).execute();
          await deleteResourceRow(tx, "User", user);
          return {};
        });
        sessions.forgetUser(call.path.uuid!);
        return {};
      },
    },
    queryQuota: queryHandler("Quota"),
    updateQuota,
    queryAudit: queryHandler("Audit"),
  };
}

function sessionPath(uuid: string | undefined) {
  if (!uuid || !UUID_PATTERN.test(uuid)) {
    throw new ApiError(
      "invalidArgument",
      `invalid session uuid '${uuid}': expected 32 lower-case hex characters`,
    );
  }

  return uuid;
}

async function logInByAccount(
  core: Core,
  sessions: SessionService,
  params: Record<string, unknown>,
) {
  checkPasswordHash(params.password, "logInByAccount.password");
  const account = await core.kysely
    .selectFrom("accounts")
    .selectAll()
    .where("name", "=", String(params.accountName))
    .executeTakeFirst();

  if (!account || !(await verifyPassword(String(params.password), account.passwordHash))) {
    throw new ApiError("authentication", "wrong account name or password");
  }

  if (account.state !== "Enabled") {
    throw new ApiError("authentication", `account ${account.name} is ${account.state}`);
  }

  const session = await sessions.create(account.uuid, account.uuid, "AccountVO");
  return { inventory: sessionInventory(session) };
}

async function logInByUser(core: Core, sessions: SessionService, params: Record<string, unknown>) {
  checkPasswordHash(params.password, "logInByUser.password");
  let query = core.kysely
    .selectFrom("users")
    .innerJoin("accounts", "accounts.uuid", "users.accountUuid")
    .select([
      "users.uuid",
      "users.accountUuid",
      "users.passwordHash",
      "users.state",
      "accounts.state as accountState",
    ])
    .where("users.name", "=", String(params.userName));

  if (params.accountUuid) {
    query = query.where("accounts.uuid", "=", String(params.accountUuid));
  } else if (params.accountName) {
    query = query.where("accounts.name", "=", String(params.accountName));
  } else {
    throw new ApiError(
      "invalidArgument",
      "logInByUser needs accountName or accountUuid beside userName",
    );
  }

  const user = await query.executeTakeFirst();

  if (!user || !(await verifyPassword(String(params.password), user.passwordHash))) {
    throw new ApiError("authentication", "wrong account, user name or password");
  }

  if (user.state !== "Enabled" || user.accountState !== "Enabled") {
    throw new ApiError(
      "authentication",
      `user ${String(params.userName)} or its account is disabled`,
    );
  }

  const session = await sessions.create(user.accountUuid, user.uuid, "UserVO");
  return { inventory: sessionInventory(session) };
}

const createAccount: ApiHandler = {
  async check(core, call) {
    checkPasswordHash(call.params.password, "params.password");
    await nameFree(core.kysely, "accounts", String(call.params.name));
  },
  async run(core, call) {
    const passwordHash = await hashPassword(String(call.params.password));
    return call.commit(async (tx) => {
      await nameFree(tx, "accounts", String(call.params.name));
      const uuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
      const values = {
        uuid,
        name: call.params.name,
        description: call.params.description ?? null,
        type: call.params.type ?? "Normal",
        state: "Enabled",
        passwordHash,
      };
      // An account owns itself, so normal accounts see their own account row.
      const row = await insertResource(
        tx,
        core,
        "Account",
        { ...values, accountUuid: uuid },
        { ...call, params: { ...call.params, resourceUuid: uuid } },
      );
      await insertDefaultQuotas(tx, uuid);
      return { inventory: resourceDefinition("Account").toInventory(row) };
    });
  },
};

const createUser: ApiHandler = {
  async check(core, call) {
    checkPasswordHash(call.params.password, "params.password");
    await userNameFree(core.kysely, call.caller.accountUuid, String(call.params.name));
  },
  async run(core, call) {
    const passwordHash = await hashPassword(String(call.params.password));
    return call.commit(async (tx) => {
      await userNameFree(tx, call.caller.accountUuid, String(call.params.name));
      const row = await insertResource(
        tx,
        core,
        "User",
        {
          name: call.params.name,
          description: call.params.description ?? null,
          state: "Enabled",
          passwordHash,
        },
        call,
      );
      return { inventory: resourceDefinition("User").toInventory(row) };
    });
  },
};

async function nameFree(db: Executor, table: "accounts", name: string) {
  const taken = await db
    .selectFrom(table)
    .select("uuid")
    .where("name", "=", name)
    .executeTakeFirst();

  if (taken) {
    throw new ApiError(
      "invalidArgument",
      `an account named '${name}' already exists (${taken.uuid}); choose another name`,
    );
  }
}

async function userNameFree(db: Executor, accountUuid: string, name: string) {
  const taken = await db
    .selectFrom("users")
    .select("uuid")
    .where("accountUuid", "=", accountUuid)
    .where("name", "=", name)
    .executeTakeFirst();

  if (taken) {
    throw new ApiError(
      "invalidArgument",
      `a user named '${name}' already exists in account ${accountUuid} (${taken.uuid}); choose another name`,
    );
  }
}

function updateWithPassword(type: "Account" | "User"): ApiHandler {
  return {
    async check(core, call) {
      if (call.params.password !== undefined) {
        checkPasswordHash(call.params.password, `update${type}.password`);
      }

      await loadResource(core.kysely, type, call.path.uuid!, call.caller);
    },
    async run(_core, call) {
      const passwordHash =
        call.params.password === undefined
          ? undefined
          : await hashPassword(String(call.params.password));
      return call.commit(async (tx) => {
        const row = await loadResource(tx, type, call.path.uuid!, call.caller);
        const changes = Object.fromEntries(
          Object.entries({
            name: call.params.name,
            description: call.params.description,
            passwordHash,
          }).filter(([, value]) => value !== undefined),
        );
        return { inventory: await updateResource(tx, type, row, changes) };
      });
    },
  };
}

function deleteAccount(sessions: SessionService): ApiHandler {
  return {
    async check(core, call) {
      const account = await loadResource(core.kysely, "Account", call.path.uuid!, call.caller);

      if (account.uuid === call.caller.accountUuid) {
        throw new ApiError(
          "invalidArgument",
          "an account cannot delete itself; log in as another admin account",
        );
      }
    },
    run: (_core, call) =>
      call.commit(async (tx) => {
        const account = await loadResource(tx, "Account", call.path.uuid!, call.caller);
        const owned = await tx
          .selectFrom("resources")
          .select(["uuid", "resourceType"])
          .where("accountUuid", "=", String(account.uuid))
          .where("uuid", "!=", String(account.uuid))
          .where("resourceType", "!=", "User")
          .limit(5)
          .execute();

        if (owned.length > 0) {
          const list = owned
            .map((resource) => `${resource.resourceType} ${resource.uuid}`)
            .join(", ");
          throw new ApiError(
            "operationFailed",
            `account ${account.uuid} still owns resources (${list}); delete them first`,
          );
        }

        const users = await tx
          .selectFrom("users")
          .selectAll()
          .where("accountUuid", "=", String(account.uuid))
          .execute();

        for (const user of users) {
          await deleteResourceRow(tx, "User", user);
        }

        await tx.deleteFrom("sessions").where("accountUuid", "=", String(account.uuid)).execute();
        await tx.deleteFrom("quotas").where("identityUuid", "=", String(account.uuid)).execute();
        await deleteResourceRow(tx, "Account", account);
        sessions.forgetAccount(String(account.uuid));
        return {};
      }),
  };
}

const updateQuota: ApiHandler = {
  async check(core, call) {
    if (!quotaDefinition(String(call.params.name))) {
      throw new ApiError(
        "invalidArgument",
        `updateQuota.name: unknown quota '${String(call.params.name)}'; query /zstack/v1/accounts/quotas for the names`,
      );
    }

    await loadResource(core.kysely, "Account", String(call.params.identityUuid), call.caller);
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      const identityUuid = String(call.params.identityUuid);
      const name = String(call.params.name);
      const value = Number(call.params.value);
      const stamp = now();
      const existing = await tx
        .selectFrom("quotas")
        .select("uuid")
        .where("identityUuid", "=", identityUuid)
        .where("name", "=", name)
        .executeTakeFirst();

      if (existing) {
        await tx
          .updateTable("quotas")
          .set({ value, lastOpDate: stamp })
          .where("uuid", "=", existing.uuid)
          .execute();
      } else {
        await tx
          .insertInto("quotas")
          .values({
            uuid: newUuid(),
            identityUuid,
            identityType: "AccountVO",
            name,
            value,
            createDate: stamp,
            lastOpDate: stamp,
          })
          .execute();
      }

      const row = await tx
        .selectFrom("quotas")
        .selectAll()
        .where("identityUuid", "=", identityUuid)
        .where("name", "=", name)
        .executeTakeFirstOrThrow();
      return { inventory: { ...row, value: Number(row.value) } };
    }),
};
