import { ApiError } from "@tstack/api";
import { sql } from "kysely";
import type { Core } from "../../core/core.js";

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * The VM system tags tstack reads. A ZStack tag tstack does not implement, such as
 * `bootMode::UEFI`, is rejected rather than stored, so the caller does not expect its effect.
 */
const VM_TAG_KEYS = ["hostname", "staticIp", "userdata"];

/** The VM system tags of a create request, checked: static IPs by L3 network and the hostname. */
export interface VmTags {
  staticIps: Record<string, string>;
  hostname?: string;
}

/** Checks the VM system tags: known keys, each at most once (staticIp once per L3 network). */
export function checkVmTags(tags: string[], l3NetworkUuids: string[]): VmTags {
  const result: VmTags = { staticIps: {} };
  const seen = new Set<string>();

  for (const tag of tags) {
    const [key = "", ...rest] = tag.split("::");
    const value = rest.join("::");

    if (!VM_TAG_KEYS.includes(key)) {
      throw new ApiError(
        "invalidArgument",
        `systemTags: '${tag.slice(0, 100)}' is not a VM system tag tstack supports; use ${VM_TAG_KEYS.map((known) => `${known}::`).join(", ")}`,
      );
    }

    const once = key === "staticIp" ? `${key}::${rest[0]}` : key;

    if (seen.has(once)) {
      throw new ApiError("invalidArgument", `systemTags: '${once}' is given more than once`);
    }

    seen.add(once);

    if (key === "hostname") {
      result.hostname = checkHostname(value);
    }

    if (key === "staticIp") {
      const [l3Uuid, ip] = rest;

      if (!l3Uuid || !ip || !IPV4.test(ip) || !l3NetworkUuids.includes(l3Uuid)) {
        throw new ApiError(
          "invalidArgument",
          `systemTags: invalid '${tag}'; expected staticIp::<uuid of one of the VM's L3 networks>::<IPv4 address>`,
        );
      }

      result.staticIps[l3Uuid] = ip;
    }

    if (key === "userdata") {
      checkUserdata(value);
    }
  }

  return result;
}

function checkHostname(value: string) {
  if (!DNS_LABEL.test(value)) {
    throw new ApiError(
      "invalidArgument",
      `systemTags: hostname '${value}' is not a DNS label (letters, digits and '-', at most 63, not starting or ending with '-')`,
    );
  }

  return value;
}

function checkUserdata(value: string) {
  if (value.length > 65536) {
    throw new ApiError("invalidArgument", "systemTags: userdata is longer than 64 KiB");
  }

  // ZStack passes userdata base64-encoded; a value that is not base64 would reach guests garbled.
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw new ApiError(
      "invalidArgument",
      "systemTags: userdata must be base64-encoded, as ZStack sends it",
    );
  }
}

/**
 * Rejects a hostname that a live VM with a NIC on one of the L3 networks already has: the L3's
 * DNS would answer the name with two addresses. Names compare case-insensitively, as DNS does.
 * A destroyed VM no longer holds its name.
 */
export async function checkHostnameFree(core: Core, hostname: string, l3NetworkUuids: string[]) {
  if (l3NetworkUuids.length === 0) {
    return;
  }

  const taken = await core.kysely
    .selectFrom("tags")
    .innerJoin("vmNics", "vmNics.vmInstanceUuid", "tags.resourceUuid")
    .innerJoin("vmInstances", "vmInstances.uuid", "tags.resourceUuid")
    .select(["tags.resourceUuid", "vmNics.l3NetworkUuid"])
    .where("tags.resourceType", "=", "VmInstance")
    .where(sql<string>`lower(tags.tag)`, "=", `hostname::${hostname.toLowerCase()}`)
    .where("vmNics.l3NetworkUuid", "in", l3NetworkUuids)
    .where("vmInstances.state", "not in", ["Destroyed", "Expunging"])
    .executeTakeFirst();

  if (taken) {
    throw new ApiError(
      "conflict",
      `systemTags: hostname '${hostname}' is already used by VM ${taken.resourceUuid} on L3 network ${taken.l3NetworkUuid}`,
      "choose another hostname, or put the VM on another L3 network",
    );
  }
}
