import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import { newUuid, now } from "../core/ids.js";
import type { SessionTable } from "../db/schema.js";

/** The identity behind an authenticated request. */
export interface Caller {
  sessionUuid: string;
  accountUuid: string;
  userUuid: string;
  isAdmin: boolean;
}

// Sliding renewals are written at most this often, so reads do not each cost a write.
const RENEW_GRANULARITY_MS = 60_000;
const CACHE_TTL_MS = 5_000;

/** Sessions: creation with a per-account cap, sliding expiry, logout. */
export class SessionService {
  private readonly cache = new Map<
    string,
    { caller: Caller; expiresAt: number; fetchedAt: number }
  >();

  constructor(private readonly core: Core) {}

  private get timeoutMs() {
    return this.core.config.number("identity", "session.timeout") * 1000;
  }

  async create(accountUuid: string, userUuid: string, userType: string): Promise<SessionTable> {
    const max = this.core.config.number("identity", "session.maxConcurrent");
    const stamp = now();
    const open = await this.core.kysely
      .selectFrom("sessions")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("accountUuid", "=", accountUuid)
      .where("expiredDate", ">", stamp)
      .executeTakeFirst();

    // As in ZStack, the cap counts the sessions of the account and all its users together.
    if (Number(open?.count ?? 0) >= max) {
      throw new ApiError(
        "authentication",
        `account ${accountUuid} already has ${max} open sessions, the maximum set by identity.session.maxConcurrent; log out unused sessions or raise the limit`,
      );
    }

    const session: SessionTable = {
      uuid: newUuid(),
      accountUuid,
      userUuid,
      userType,
      expiredDate: new Date(Date.now() + this.timeoutMs).toISOString(),
      createDate: stamp,
    };
    await this.core.kysely.insertInto("sessions").values(session).execute();
    return session;
  }

  /**
   * Returns the caller of a session read from the database less than 5 s ago and not expired,
   * or undefined, so a request can skip the promise of `authenticate` on a cache hit.
   */
  cachedCaller(sessionUuid: string): Caller | undefined {
    const cached = this.cache.get(sessionUuid);
    const current = Date.now();

    if (cached && current - cached.fetchedAt < CACHE_TTL_MS && cached.expiresAt > current) {
      return cached.caller;
    }

    return undefined;
  }

  /** Resolves a session to its caller and slides its expiry, or throws ID.1001. */
  async authenticate(sessionUuid: string): Promise<Caller> {
    const cached = this.cachedCaller(sessionUuid);

    if (cached) {
      return cached;
    }

    const current = Date.now();
    const row = await this.core.kysely
      .selectFrom("sessions")
      .innerJoin("accounts", "accounts.uuid", "sessions.accountUuid")
      .select([
        "sessions.uuid",
        "sessions.accountUuid",
        "sessions.userUuid",
        "sessions.expiredDate",
        "accounts.type",
        "accounts.state",
      ])
      .where("sessions.uuid", "=", sessionUuid)
      .executeTakeFirst();

    if (!row || Date.parse(row.expiredDate) <= current) {
      this.cache.delete(sessionUuid);
      throw new ApiError(
        "invalidSession",
        `session ${sessionUuid} is invalid or expired; log in again`,
      );
    }

    if (row.state !== "Enabled") {
      throw new ApiError(
        "invalidSession",
        `account ${row.accountUuid} of session ${sessionUuid} is ${row.state}`,
      );
    }

    const expiresAt = await this.slide(sessionUuid, Date.parse(row.expiredDate), current);
    const caller = {
      sessionUuid,
      accountUuid: row.accountUuid,
      userUuid: row.userUuid,
      isAdmin: row.type === "SystemAdmin",
    };
    this.cache.set(sessionUuid, { caller, expiresAt, fetchedAt: current });
    return caller;
  }

  private async slide(sessionUuid: string, expiresAt: number, current: number) {
    const target = current + this.timeoutMs;

    if (target - expiresAt < RENEW_GRANULARITY_MS) {
      return expiresAt;
    }

    await this.core.kysely
      .updateTable("sessions")
      .set({ expiredDate: new Date(target).toISOString() })
      .where("uuid", "=", sessionUuid)
      .execute();
    return target;
  }

  async renew(sessionUuid: string, durationSeconds?: number) {
    await this.authenticate(sessionUuid);
    const expiredDate = new Date(
      Date.now() + (durationSeconds ? durationSeconds * 1000 : this.timeoutMs),
    ).toISOString();
    await this.core.kysely
      .updateTable("sessions")
      .set({ expiredDate })
      .where("uuid", "=", sessionUuid)
      .execute();
    this.cache.delete(sessionUuid);
    return this.core.kysely
      .selectFrom("sessions")
      .selectAll()
      .where("uuid", "=", sessionUuid)
      .executeTakeFirstOrThrow();
  }

  async remove(sessionUuid: string) {
    this.cache.delete(sessionUuid);
    await this.core.kysely.deleteFrom("sessions").where("uuid", "=", sessionUuid).execute();
  }

  /** Forgets cached sessions of an account, after it is disabled or deleted. */
  forgetAccount(accountUuid: string) {
    this.forget((caller) => caller.accountUuid === accountUuid);
  }

  /** Forgets cached sessions of a user, after it is deleted. */
  forgetUser(userUuid: string) {
    this.forget((caller) => caller.userUuid === userUuid);
  }

  private forget(matches: (caller: Caller) => boolean) {
    for (const [uuid, entry] of this.cache) {
      if (matches(entry.caller)) {
        this.cache.delete(uuid);
      }
    }
  }

  async purgeExpired() {
    await this.core.kysely.deleteFrom("sessions").where("expiredDate", "<", now()).execute();
  }
}

/** Renders a session row as ZStack's SessionInventory. */
export function sessionInventory(session: SessionTable) {
  return { ...session, noSessionEvaluation: false };
}
