import { ApiError } from "@tstack/api";
import { now } from "../core/ids.js";
import {
  changeStateHandler,
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
import { PROVIDERS, SERVICE_NEEDS } from "./providers.js";

const createL3Network: ApiHandler = {
  async check(core, call) {
    const l2 = await referenced(
      core.kysely,
      "l2Networks",
      call.params.l2NetworkUuid,
      "params.l2NetworkUuid",
      "L2 network",
    );

    if (l2.type === "VxlanNetworkPool") {
      invalid(
        "params.l2NetworkUuid",
        `L2 network ${String(l2.uuid)} is a VXLAN pool; create a VXLAN network in it and put the L3 network on that`,
      );
    }
  },
  run: (core, call) =>
    call.commit(async (tx) => {
      const l2 = await referenced(
        tx,
        "l2Networks",
        call.params.l2NetworkUuid,
        "params.l2NetworkUuid",
        "L2 network",
      );
      const row = await insertResource(
        tx,
        core,
        "L3Network",
        {
          name: call.params.name,
          description: call.params.description ?? null,
          zoneUuid: l2.zoneUuid,
          l2NetworkUuid: l2.uuid,
          type: call.params.type ?? "L3BasicNetwork",
          category: call.params.category ?? "Private",
          ipVersion: call.params.ipVersion ?? 4,
          dnsDomain: call.params.dnsDomain ?? null,
          state: "Enabled",
          system: call.params.system === true ? 1 : 0,
        },
        call,
      );
      return { inventory: await inventoryOf(tx, "L3Network", String(row.uuid)) };
    }),
};

const deleteL3Network: ApiHandler = {
  async check(core, call) {
    deleteMode(call);
    await loadResource(core.kysely, "L3Network", call.path.uuid!, call.caller);
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      const l3 = await loadResource(tx, "L3Network", call.path.uuid!, call.caller);
      const uuid = String(l3.uuid);
      const nic = await tx
        .selectFrom("vmNics")
        .select(["uuid", "vmInstanceUuid"])
        .where("l3NetworkUuid", "=", uuid)
        .executeTakeFirst();

      if (nic) {
        throw new ApiError(
          "invalidState",
          `L3 network ${uuid} has VM NIC ${nic.uuid} of VM ${nic.vmInstanceUuid}; delete the VM's NIC first`,
        );
      }

      await tx.deleteFrom("usedIps").where("l3NetworkUuid", "=", uuid).execute();

      for (const range of await tx
        .selectFrom("ipRanges")
        .selectAll()
        .where("l3NetworkUuid", "=", uuid)
        .execute()) {
        await deleteResourceRow(tx, "IpRange", range);
      }

      await tx.deleteFrom("l3Dns").where("l3NetworkUuid", "=", uuid).execute();
      await tx.deleteFrom("l3NetworkServiceRefs").where("l3NetworkUuid", "=", uuid).execute();
      await deleteResourceRow(tx, "L3Network", l3);
      return {};
    }),
};

const addDnsToL3Network: ApiHandler = {
  async check(core, call) {
    await referenced(
      core.kysely,
      "l3Networks",
      call.path.l3NetworkUuid,
      "l3NetworkUuid",
      "L3 network",
    );
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      const l3NetworkUuid = call.path.l3NetworkUuid!;
      const dns = String(call.params.dns);
      const existing = await tx
        .selectFrom("l3Dns")
        .select(["dns", "position"])
        .where("l3NetworkUuid", "=", l3NetworkUuid)
        .execute();

      if (existing.some((entry) => entry.dns === dns)) {
        invalid("params.dns", `L3 network ${l3NetworkUuid} already has DNS server ${dns}`);
      }

      const position = Math.max(-1, ...existing.map((entry) => Number(entry.position))) + 1;
      await tx
        .insertInto("l3Dns")
        .values({ l3NetworkUuid, dns, position, createDate: now() })
        .execute();
      return { inventory: await inventoryOf(tx, "L3Network", l3NetworkUuid) };
    }),
  queueKey: (call) => call.path.l3NetworkUuid,
};

const removeDnsFromL3Network: ApiHandler = {
  async check(core, call) {
    await referenced(
      core.kysely,
      "l3Networks",
      call.path.l3NetworkUuid,
      "l3NetworkUuid",
      "L3 network",
    );
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      await tx
        .deleteFrom("l3Dns")
        .where("l3NetworkUuid", "=", call.path.l3NetworkUuid!)
        .where("dns", "=", call.path.dns!)
        .execute();
      return {};
    }),
  queueKey: (call) => call.path.l3NetworkUuid,
};

/** Checks the provider → service types map of `attachNetworkServiceToL3Network`. */
function requestedServices(call: ApiCall) {
  const map = call.params.networkServices as Record<string, string[]>;
  const refs: { provider: string; type: string }[] = [];

  for (const [providerUuid, types] of Object.entries(map)) {
    const provider = PROVIDERS.find((candidate) => candidate.uuid === providerUuid);

    if (!provider) {
      invalid(
        `params.networkServices.${providerUuid}`,
        `no network service provider ${providerUuid}; query /network-services/providers for their uuids`,
      );
    }

    for (const type of types) {
      if (!provider.networkServiceTypes.includes(type)) {
        invalid(
          `params.networkServices.${providerUuid}`,
          `provider ${provider.name} offers ${provider.networkServiceTypes.join(", ")}, not ${type}`,
        );
      }

      refs.push({ provider: providerUuid, type });
    }
  }

  return refs;
}

const attachNetworkServiceToL3Network: ApiHandler = {
  async check(core, call) {
    await referenced(
      core.kysely,
      "l3Networks",
      call.path.l3NetworkUuid,
      "l3NetworkUuid",
      "L3 network",
    );
    requestedServices(call);
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      const l3NetworkUuid = call.path.l3NetworkUuid!;
      const refs = requestedServices(call);
      const existing = await tx
        .selectFrom("l3NetworkServiceRefs")
        .select("networkServiceType")
        .where("l3NetworkUuid", "=", l3NetworkUuid)
        .execute();
      const types = new Set([
        ...existing.map((ref) => ref.networkServiceType),
        ...refs.map((ref) => ref.type),
      ]);

      for (const type of types) {
        const needed = SERVICE_NEEDS[type];

        if (needed && !types.has(needed)) {
          invalid(
            "params.networkServices",
            `${type} needs ${needed} on the same L3 network; enable ${needed} too`,
          );
        }
      }

      for (const ref of refs) {
        await tx
          .insertInto("l3NetworkServiceRefs")
          .values({
            l3NetworkUuid,
            networkServiceProviderUuid: ref.provider,
            networkServiceType: ref.type,
          })
          .onConflict((conflict) =>
            conflict
              .columns(["l3NetworkUuid", "networkServiceProviderUuid", "networkServiceType"])
              .doNothing(),
          )
          .execute();
      }

      return { inventory: await inventoryOf(tx, "L3Network", l3NetworkUuid) };
    }),
  queueKey: (call) => call.path.l3NetworkUuid,
};

export const l3Handlers: ApiHandlers = {
  createL3Network,
  queryL3Network: queryHandler("L3Network"),
  updateL3Network: updateHandler("L3Network", ["name", "description", "dnsDomain", "category"]),
  changeL3NetworkState: changeStateHandler("L3Network"),
  deleteL3Network,
  addDnsToL3Network,
  removeDnsFromL3Network,
  attachNetworkServiceToL3Network,
  queryNetworkServiceProvider: queryHandler("NetworkServiceProvider"),
};
