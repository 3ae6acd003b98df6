import type { ApiCall, ApiHandlers } from "../rest/api.js";
import { invalid, referenced } from "./checks.js";

function list(call: ApiCall, name: string) {
  const value = call.query[name];
  const values = value === undefined ? [] : Array.isArray(value) ? value : [value];
  return values.flatMap((entry) => entry.split(",")).filter((entry) => entry !== "");
}

/** `getIpAddressCapacity` and `getL3NetworkIpStatistic`: address counts and used addresses. */
export const capacityHandlers: ApiHandlers = {
  getIpAddressCapacity: {
    async run(core, call) {
      const l3 = list(call, "l3NetworkUuids");
      const ranges = list(call, "ipRangeUuids");
      const zones = list(call, "zoneUuids");

      if (l3.length + ranges.length + zones.length === 0) {
        invalid("l3NetworkUuids", "pass l3NetworkUuids, ipRangeUuids or zoneUuids");
      }

      let query = core.kysely
        .selectFrom("ipRanges")
        .innerJoin("l3Networks", "l3Networks.uuid", "ipRanges.l3NetworkUuid")
        .select(["ipRanges.uuid", "ipRanges.startLong", "ipRanges.endLong"]);
      query = l3.length > 0 ? query.where("ipRanges.l3NetworkUuid", "in", l3) : query;
      query = ranges.length > 0 ? query.where("ipRanges.uuid", "in", ranges) : query;
      query = zones.length > 0 ? query.where("l3Networks.zoneUuid", "in", zones) : query;
      const rows = await query.execute();
      const total = rows.reduce(
        (sum, row) => sum + Number(row.endLong) - Number(row.startLong) + 1,
        0,
      );
      const used =
        rows.length === 0
          ? 0
          : Number(
              (
                await core.kysely
                  .selectFrom("usedIps")
                  .select((eb) => eb.fn.countAll<number>().as("count"))
                  .where(
                    "ipRangeUuid",
                    "in",
                    rows.map((row) => row.uuid),
                  )
                  .executeTakeFirstOrThrow()
              ).count,
            );
      return {
        totalCapacity: total,
        availableCapacity: total - used,
        usedIpAddressNumber: used,
        ipv4TotalCapacity: total,
        ipv4AvailableCapacity: total - used,
        ipv4UsedIpAddressNumber: used,
        resourceType: "IpRangeVO",
      };
    },
  },
  getL3NetworkIpStatistic: {
    async run(core, call) {
      const l3NetworkUuid = call.path.l3NetworkUuid!;
      await referenced(core.kysely, "l3Networks", l3NetworkUuid, "l3NetworkUuid", "L3 network");
      const rows = await core.kysely
        .selectFrom("usedIps")
        .leftJoin("vmNics", "vmNics.uuid", "usedIps.vmNicUuid")
        .select([
          "usedIps.ip",
          "usedIps.ipRangeUuid",
          "usedIps.usedFor",
          "usedIps.vmNicUuid",
          "vmNics.vmInstanceUuid",
          "vmNics.mac",
          "vmNics.accountUuid",
        ])
        .where("usedIps.l3NetworkUuid", "=", l3NetworkUuid)
        .orderBy("usedIps.ipInLong")
        .execute();
      // A normal account gets the VM fields of its own NICs only. Other used addresses carry none.
      const { isAdmin, accountUuid } = call.caller;
      return {
        ipStatistics: rows.map((row) => {
          const visible = isAdmin || row.accountUuid === accountUuid;
          return {
            ip: row.ip,
            ipRangeUuid: row.ipRangeUuid,
            resourceTypes: [row.usedFor === "DHCP" ? "DHCP" : "VM"],
            vmInstanceUuid: visible ? (row.vmInstanceUuid ?? null) : null,
            vmNicUuid: visible ? (row.vmNicUuid ?? null) : null,
            vmNicMac: visible ? (row.mac ?? null) : null,
          };
        }),
        total: rows.length,
      };
    },
  },
};
