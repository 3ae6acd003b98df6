import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import {
  deleteMode,
  deleteResourceRow,
  insertResource,
  inventoryOf,
  loadResource,
  queryHandler,
  updateHandler,
} from "../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";
import { invalid, referenced } from "./checks.js";
import {
  cidrText,
  contains,
  ipToLong,
  longToIp,
  type Network,
  netmaskPrefix,
  networkOf,
  parseRangeCidr,
} from "./ipv4.js";

/** A validated IPv4 range, ready to insert. */
interface RangeSpec {
  startIp: string;
  endIp: string;
  netmask: string;
  gateway: string;
  network: Network;
}

/** Turns the parameters of `addIpRange` into a range, or rejects them naming the field. */
function rangeFromParams(params: Record<string, unknown>): RangeSpec {
  const startIp = String(params.startIp);
  const endIp = String(params.endIp);
  const netmask = String(params.netmask);
  const gateway = String(params.gateway);
  const prefix = netmaskPrefix(netmask);

  if (prefix === undefined || prefix < 8 || prefix > 30) {
    invalid(
      "params.netmask",
      `${netmask} is not a netmask from /8 to /30 with contiguous one bits, such as 255.255.255.0`,
    );
  }

  const network = networkOf(startIp, prefix);
  const start = ipToLong(startIp);
  const end = ipToLong(endIp);

  if (start > end) {
    invalid("params.endIp", `endIp ${endIp} is below startIp ${startIp}`);
  }

  if (!contains(network, end)) {
    invalid("params.endIp", `endIp ${endIp} is outside ${cidrText(network)} of startIp ${startIp}`);
  }

  const broadcast = network.network + network.size - 1;

  if (start === network.network || end === broadcast) {
    invalid(
      start === network.network ? "params.startIp" : "params.endIp",
      `the range ${startIp}-${endIp} includes the network or broadcast address of ${cidrText(network)}`,
    );
  }

  checkGateway(network, start, end, gateway, "params.gateway");
  return { startIp, endIp, netmask, gateway, network };
}

function checkGateway(
  network: Network,
  start: number,
  end: number,
  gateway: string,
  field: string,
) {
  const value = ipToLong(gateway);
  const broadcast = network.network + network.size - 1;

  if (!contains(network, value) || value === network.network || value === broadcast) {
    invalid(field, `gateway ${gateway} is not a host address of ${cidrText(network)}`);
  }

  if (value >= start && value <= end) {
    invalid(
      field,
      `gateway ${gateway} lies inside the range ${longToIp(start)}-${longToIp(end)}; put it outside the range`,
    );
  }
}

/**
 * The range of `addIpRangeByNetworkCidr`: every host address but the gateway, which must be the
 * first or the last host address (the first when unset), so the rest stays one range.
 */
function rangeFromCidr(params: Record<string, unknown>): RangeSpec {
  const network = parseRangeCidr(String(params.networkCidr), "params.networkCidr");
  const first = network.network + 1;
  const last = network.network + network.size - 2;
  const gateway = params.gateway === undefined ? first : ipToLong(String(params.gateway));

  if (gateway !== first && gateway !== last) {
    invalid(
      "params.gateway",
      `gateway ${longToIp(gateway)} must be the first (${longToIp(first)}) or last (${longToIp(last)}) host address of ${cidrText(network)}; use addIpRange for other layouts`,
    );
  }

  return {
    startIp: longToIp(gateway === first ? first + 1 : first),
    endIp: longToIp(gateway === first ? last : last - 1),
    netmask: longToIp(2 ** 32 - network.size),
    gateway: longToIp(gateway),
    network,
  };
}

/**
 * Checks a new range against the L3 network's other ranges (one CIDR and gateway for all, no
 * overlap) and against the ranges of other L3 networks on the same L2 network (no overlap).
 */
async function checkAgainstExisting(core: Core, l3NetworkUuid: string, range: RangeSpec) {
  const l3 = await referenced(
    core.kysely,
    "l3Networks",
    l3NetworkUuid,
    "l3NetworkUuid",
    "L3 network",
  );
  const start = ipToLong(range.startIp);
  const end = ipToLong(range.endIp);
  const siblings = await core.kysely
    .selectFrom("ipRanges")
    .innerJoin("l3Networks", "l3Networks.uuid", "ipRanges.l3NetworkUuid")
    .selectAll("ipRanges")
    .where("l3Networks.l2NetworkUuid", "=", String(l3.l2NetworkUuid))
    .execute();

  for (const other of siblings) {
    const sameL3 = other.l3NetworkUuid === l3NetworkUuid;

    if (sameL3 && other.networkCidr !== cidrText(range.network)) {
      invalid(
        "params",
        `L3 network ${l3NetworkUuid} already has ranges in ${other.networkCidr}; every range of an L3 network must lie in that one CIDR`,
      );
    }

    if (sameL3 && other.gateway !== range.gateway) {
      invalid(
        "params.gateway",
        `gateway ${range.gateway} differs from ${other.gateway} of range ${other.uuid}; all ranges of an L3 network share one gateway`,
      );
    }

    if (Number(other.startLong) <= end && Number(other.endLong) >= start) {
      invalid(
        "params",
        `range ${range.startIp}-${range.endIp} overlaps range ${other.uuid} (${other.startIp}-${other.endIp}) of L3 network ${other.l3NetworkUuid}; pick addresses outside it`,
      );
    }
  }
}

function addRange(build: (params: Record<string, unknown>) => RangeSpec): ApiHandler {
  const spec = (call: ApiCall) => build(call.params);
  return {
    async check(core, call) {
      await checkAgainstExisting(core, call.path.l3NetworkUuid!, spec(call));
    },
    run: (core, call) =>
      call.commit(async (tx) => {
        const range = spec(call);
        const row = await insertResource(
          tx,
          core,
          "IpRange",
          {
            name: call.params.name,
            description: call.params.description ?? null,
            l3NetworkUuid: call.path.l3NetworkUuid,
            startIp: range.startIp,
            endIp: range.endIp,
            netmask: range.netmask,
            gateway: range.gateway,
            networkCidr: cidrText(range.network),
            prefixLen: range.network.prefix,
            ipVersion: 4,
            startLong: ipToLong(range.startIp),
            endLong: ipToLong(range.endIp),
          },
          call,
        );
        return { inventory: await inventoryOf(tx, "IpRange", String(row.uuid)) };
      }),
    // Ranges of one L3 network are added one at a time, so the overlap check holds.
    queueKey: (call) => call.path.l3NetworkUuid,
  };
}

const deleteIpRange: ApiHandler = {
  async check(core, call) {
    deleteMode(call);
    await loadResource(core.kysely, "IpRange", call.path.uuid!, call.caller);
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      const range = await loadResource(tx, "IpRange", call.path.uuid!, call.caller);
      const used = await tx
        .selectFrom("usedIps")
        .select(["ip", "usedFor", "vmNicUuid"])
        .where("ipRangeUuid", "=", String(range.uuid))
        .where("usedFor", "=", "VmNic")
        .executeTakeFirst();

      if (used) {
        throw new ApiError(
          "invalidState",
          `IP range ${range.uuid} has address ${used.ip} in use by VM NIC ${used.vmNicUuid}; delete that VM's NIC first`,
        );
      }

      // The DHCP server address is only reserved; it is taken again from another range on demand.
      await tx.deleteFrom("usedIps").where("ipRangeUuid", "=", String(range.uuid)).execute();
      await deleteResourceRow(tx, "IpRange", range);
      return {};
    }),
};

export const ipRangeHandlers: ApiHandlers = {
  addIpRange: addRange(rangeFromParams),
  addIpRangeByNetworkCidr: addRange(rangeFromCidr),
  queryIpRange: queryHandler("IpRange"),
  updateIpRange: updateHandler("IpRange"),
  deleteIpRange,
};
