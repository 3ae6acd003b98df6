import { randomBytes, randomInt } from "node:crypto";
import { ApiError } from "@tstack/api";
import { sql, type Transaction } from "kysely";
import type { Core } from "../core/core.js";
import { newUuid, now } from "../core/ids.js";
import type { Database } from "../db/schema.js";
import { IP_STRATEGIES, IP_STRATEGY_TAG } from "./config.js";
import { ipToLong, longToIp } from "./ipv4.js";

type Tx = Transaction<Database>;

/** An address taken from an L3 network's ranges. */
export interface AllocatedIp {
  usedIpUuid: string;
  ip: string;
  netmask: string;
  gateway: string;
  ipRangeUuid: string;
}

interface Range {
  uuid: string;
  start: number;
  end: number;
  netmask: string;
  gateway: string;
}

/** Tries after a lost race before giving up; each try rereads the used addresses. */
const MAX_TRIES = 64;

async function rangesOf(tx: Tx, l3NetworkUuid: string): Promise<Range[]> {
  const rows = await tx
    .selectFrom("ipRanges")
    .select(["uuid", "startLong", "endLong", "netmask", "gateway"])
    .where("l3NetworkUuid", "=", l3NetworkUuid)
    .orderBy("startLong")
    .execute();
  return rows.map((row) => ({
    uuid: row.uuid,
    start: Number(row.startLong),
    end: Number(row.endLong),
    netmask: row.netmask,
    gateway: row.gateway,
  }));
}

/** The strategy of an L3 network: its `ipAllocationStrategy::` tag, else the global config. */
async function strategyOf(core: Core, tx: Tx, l3NetworkUuid: string) {
  const tag = await tx
    .selectFrom("tags")
    .select("tag")
    .where("resourceUuid", "=", l3NetworkUuid)
    .where("tag", "like", `${IP_STRATEGY_TAG}%`)
    .executeTakeFirst();
  const value = tag?.tag.slice(IP_STRATEGY_TAG.length);

  if (value !== undefined && IP_STRATEGIES.includes(value)) {
    return value;
  }

  return core.config.get("l3Network", "ipAllocationStrategy");
}

/**
 * Holds PostgreSQL advisory locks on these L3 networks' addresses until the transaction ends. They
 * are taken in sorted order, so two transactions locking several networks cannot deadlock on them.
 * Without them, concurrent first-available allocations all pick the lowest address that is free
 * in the committed data, and one of 100 concurrent allocations lost `MAX_TRIES` races in a row in
 * the ip-allocation benchmark. SQLite runs one write transaction at a time, so it needs no lock.
 * A session may take a lock it already holds.
 */
export async function lockL3Addresses(core: Core, tx: Tx, l3NetworkUuids: string[]) {
  if (core.db.dialect !== "postgres") {
    return;
  }

  for (const uuid of [...new Set(l3NetworkUuids)].sort()) {
    await sql`select pg_advisory_xact_lock(hashtext(${`tstack-ip:${uuid}`}))`.execute(tx);
  }
}

/** Inserts the used-address row, and returns false when another allocation already has that address. */
async function claim(
  tx: Tx,
  l3NetworkUuid: string,
  range: Range,
  ip: number,
  usedFor: string,
  vmNicUuid: string | null,
): Promise<AllocatedIp | undefined> {
  const usedIpUuid = newUuid();
  const result = await tx
    .insertInto("usedIps")
    .values({
      uuid: usedIpUuid,
      l3NetworkUuid,
      ipRangeUuid: range.uuid,
      ip: longToIp(ip),
      ipInLong: ip,
      netmask: range.netmask,
      gateway: range.gateway,
      usedFor,
      vmNicUuid,
      createDate: now(),
    })
    .onConflict((conflict) => conflict.columns(["l3NetworkUuid", "ip"]).doNothing())
    .executeTakeFirst();

  if (Number(result.numInsertedOrUpdatedRows ?? 0) === 0) {
    return undefined;
  }

  return {
    usedIpUuid,
    ip: longToIp(ip),
    netmask: range.netmask,
    gateway: range.gateway,
    ipRangeUuid: range.uuid,
  };
}

/** The lowest free address, or a random free one, over all ranges in order. */
function pick(ranges: Range[], taken: Set<number>, random: boolean): [Range, number] | undefined {
  const total = ranges.reduce((sum, range) => sum + range.end - range.start + 1, 0);
  const offset = random && total > 0 ? randomInt(total) : 0;

  for (let step = 0; step < total; step++) {
    let index = (offset + step) % total;

    for (const range of ranges) {
      const size = range.end - range.start + 1;

      if (index < size) {
        const ip = range.start + index;

        if (!taken.has(ip)) {
          return [range, ip];
        }

        break;
      }

      index -= size;
    }
  }

  return undefined;
}

/** Random addresses tried before reading every used address. A nearly full L3 uses them all. */
const RANDOM_PICKS = 8;

/**
 * Claims the lowest free address, found in SQL. The count and bounds of a range's used addresses
 * give the address after a run without gaps, and only a range with a gap is walked to its first
 * gap. Returns undefined when every range is full or the claim lost a race.
 * NOTE: the count still steps over every used address of the range in the index, so its cost
 * grows with the addresses in use, though far less than reading them all into the process.
 */
async function claimFirstFree(
  tx: Tx,
  l3NetworkUuid: string,
  ranges: Range[],
  usedFor: string,
  vmNicUuid: string | null,
) {
  for (const range of ranges) {
    const ip = await firstFreeIn(tx, l3NetworkUuid, range);

    if (ip !== undefined) {
      return claim(tx, l3NetworkUuid, range, ip, usedFor, vmNicUuid);
    }
  }

  return undefined;
}

async function firstFreeIn(tx: Tx, l3NetworkUuid: string, range: Range) {
  const usage = await tx
    .selectFrom("usedIps")
    .select((eb) => [
      eb.fn.countAll<number>().as("count"),
      eb.fn.min("ipInLong").as("lowest"),
      eb.fn.max("ipInLong").as("highest"),
    ])
    .where("l3NetworkUuid", "=", l3NetworkUuid)
    .where("ipInLong", ">=", range.start)
    .where("ipInLong", "<=", range.end)
    .executeTakeFirstOrThrow();
  const count = Number(usage.count);

  if (count === 0 || Number(usage.lowest) > range.start) {
    return range.start;
  }

  if (count === range.end - range.start + 1) {
    return undefined;
  }

  if (Number(usage.highest) - range.start + 1 === count) {
    return Number(usage.highest) + 1;
  }

  const gap = await tx
    .selectFrom("usedIps as used")
    .select("used.ipInLong")
    .where("used.l3NetworkUuid", "=", l3NetworkUuid)
    .where("used.ipInLong", ">=", range.start)
    .where("used.ipInLong", "<", Number(usage.highest))
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom("usedIps as next")
            .select("next.ipInLong")
            .where("next.l3NetworkUuid", "=", l3NetworkUuid)
            .where((eb) => eb("next.ipInLong", "=", eb(eb.ref("used.ipInLong"), "+", 1))),
        ),
      ),
    )
    .orderBy("used.ipInLong")
    .limit(1)
    .executeTakeFirstOrThrow();
  return Number(gap.ipInLong) + 1;
}

/** Claims random addresses until one is free, at most `RANDOM_PICKS` times. */
async function claimRandom(
  tx: Tx,
  l3NetworkUuid: string,
  ranges: Range[],
  usedFor: string,
  vmNicUuid: string | null,
) {
  for (let attempt = 0; attempt < RANDOM_PICKS; attempt++) {
    const [range, ip] = pick(ranges, new Set(), true)!;
    const claimed = await claim(tx, l3NetworkUuid, range, ip, usedFor, vmNicUuid);

    if (claimed) {
      return claimed;
    }
  }

  return undefined;
}

/**
 * Takes an address of an L3 network in the caller's transaction: the static one if given, else
 * one by the L3's strategy. The unique (l3NetworkUuid, ip) constraint decides races: a lost insert
 * does nothing, and the next try rereads the used addresses and skips the lost one.
 */
export async function allocateIp(
  core: Core,
  tx: Tx,
  l3NetworkUuid: string,
  options: { staticIp?: string; usedFor: "VmNic" | "DHCP"; vmNicUuid?: string },
): Promise<AllocatedIp> {
  const ranges = await rangesOf(tx, l3NetworkUuid);

  if (ranges.length === 0) {
    throw new ApiError(
      "operationFailed",
      `L3 network ${l3NetworkUuid} has no IP range; add one with addIpRange first`,
    );
  }

  const vmNicUuid = options.vmNicUuid ?? null;
  await lockL3Addresses(core, tx, [l3NetworkUuid]);

  if (options.staticIp !== undefined) {
    return claimStatic(tx, l3NetworkUuid, ranges, options.staticIp, options.usedFor, vmNicUuid);
  }

  const random = (await strategyOf(core, tx, l3NetworkUuid)) === "RandomIpAllocatorStrategy";
  const quick = random
    ? await claimRandom(tx, l3NetworkUuid, ranges, options.usedFor, vmNicUuid)
    : await claimFirstFree(tx, l3NetworkUuid, ranges, options.usedFor, vmNicUuid);

  if (quick) {
    return quick;
  }

  // After a lost race or a run of taken random picks, read every used address and pick from them.
  const lost = new Set<number>();

  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    const used = await tx
      .selectFrom("usedIps")
      .select("ipInLong")
      .where("l3NetworkUuid", "=", l3NetworkUuid)
      .execute();
    const taken = new Set([...lost, ...used.map((row) => Number(row.ipInLong))]);
    const candidate = pick(ranges, taken, random);

    if (!candidate) {
      throw new ApiError(
        "operationFailed",
        `L3 network ${l3NetworkUuid} has no free IP address left in its ${ranges.length} range(s); add an IP range or free addresses`,
      );
    }

    const claimed = await claim(
      tx,
      l3NetworkUuid,
      candidate[0],
      candidate[1],
      options.usedFor,
      vmNicUuid,
    );

    if (claimed) {
      return claimed;
    }

    lost.add(candidate[1]);
  }

  throw new ApiError(
    "operationFailed",
    `lost ${MAX_TRIES} races for an address of L3 network ${l3NetworkUuid}; retry the request`,
  );
}

async function claimStatic(
  tx: Tx,
  l3NetworkUuid: string,
  ranges: Range[],
  staticIp: string,
  usedFor: string,
  vmNicUuid: string | null,
) {
  const field = `systemTags: staticIp::${l3NetworkUuid}::${staticIp}`;
  const ip = /^\d{1,3}(\.\d{1,3}){3}$/.test(staticIp) ? ipToLong(staticIp) : Number.NaN;
  const range = ranges.find((candidate) => ip >= candidate.start && ip <= candidate.end);

  if (!range) {
    throw new ApiError(
      "invalidArgument",
      `${field}: ${staticIp} is not in any IP range of L3 network ${l3NetworkUuid}; pick an address inside one`,
    );
  }

  const claimed = await claim(tx, l3NetworkUuid, range, ip, usedFor, vmNicUuid);

  if (!claimed) {
    const holder = await tx
      .selectFrom("usedIps")
      .select(["usedFor", "vmNicUuid"])
      .where("l3NetworkUuid", "=", l3NetworkUuid)
      .where("ip", "=", staticIp)
      .executeTakeFirst();
    throw new ApiError(
      "invalidArgument",
      `${field}: ${staticIp} is already used on L3 network ${l3NetworkUuid} (${holder?.usedFor ?? "in use"}${holder?.vmNicUuid ? ` by VM NIC ${holder.vmNicUuid}` : ""}); pick a free address`,
    );
  }

  return claimed;
}

/** A random MAC with ZStack's `fa:` prefix (locally administered, unicast). */
export function randomMac() {
  return ["fa", ...[...randomBytes(5)].map((byte) => byte.toString(16).padStart(2, "0"))].join(":");
}
