import type { SimHost } from "../state.js";
import { type Body, type Command, CommandError, field, hostOf } from "./context.js";

function l3Uuid(body: Body) {
  const l3 = body.l3 as Body | undefined;
  return field(l3 ?? {}, "l3NetworkUuid");
}

function list(body: Body, name: string): unknown[] {
  const value = body[name];

  if (!Array.isArray(value)) {
    throw new CommandError(`invalid ${name}: expected an array`);
  }

  return value;
}

function hostUsesL2(host: SimHost, l2NetworkUuid: string) {
  return host.bridges.has(l2NetworkUuid);
}

/**
 * The `/network/...` commands. Devices are names in memory: any physical interface is accepted,
 * so a NoVlan L2 network attaches to a simulator cluster whatever interface it names.
 */
export const networkCommands: Record<string, Command> = {
  "/network/l2/check": (_context, body) =>
    body.vtepCidr === undefined ? {} : { vtepIp: "192.0.2.1", vtepInterface: "simeth0" },
  "/network/l2/ensure": (context, body) => {
    const host = hostOf(context, "/network/l2/ensure");
    const l2NetworkUuid = field(body, "l2NetworkUuid");
    const bridge = `br_${l2NetworkUuid.slice(0, 12)}`;
    host.bridges.set(l2NetworkUuid, bridge);
    return { bridge };
  },
  "/network/l2/release": (context, body) => {
    const host = hostOf(context, "/network/l2/release");
    const l2NetworkUuid = field(body, "l2NetworkUuid");
    const released = hostUsesL2(host, l2NetworkUuid);
    host.bridges.delete(l2NetworkUuid);
    return { released };
  },
  "/network/vxlan/peers/sync": () => ({ vtepIp: "192.0.2.1" }),
  "/network/dhcp/apply": (context, body) => {
    const host = hostOf(context, "/network/dhcp/apply");
    const l3 = l3Uuid(body);
    const entries = host.dhcp.get(l3) ?? new Map<string, string>();

    for (const entry of list(body, "entries") as Body[]) {
      entries.set(field(entry, "mac"), field(entry, "ip"));
    }

    host.dhcp.set(l3, entries);
    return {};
  },
  "/network/dhcp/release": (context, body) => {
    const host = hostOf(context, "/network/dhcp/release");
    const l3 = field(body, "l3NetworkUuid");
    const entries = host.dhcp.get(l3);

    for (const mac of list(body, "macs")) {
      entries?.delete(String(mac));
    }

    if (entries?.size === 0) {
      host.dhcp.delete(l3);
    }

    return {};
  },
  "/network/userdata/apply": (context, body) => {
    const host = hostOf(context, "/network/userdata/apply");
    const key = `${field(body, "l3NetworkUuid")}/${field(body, "ip")}`;
    host.userdata.set(key, field(body, "vmUuid"));
    return {};
  },
  "/network/userdata/release": (context, body) => {
    const host = hostOf(context, "/network/userdata/release");
    host.userdata.delete(`${field(body, "l3NetworkUuid")}/${field(body, "ip")}`);
    return {};
  },
  "/network/nat/apply": (context, body) => {
    hostOf(context, "/network/nat/apply").nat.add(l3Uuid(body));
    return {};
  },
  "/network/nat/remove": (context, body) => {
    hostOf(context, "/network/nat/remove").nat.delete(l3Uuid(body));
    return {};
  },
  "/network/securitygroup/apply": (context, body) => {
    const host = hostOf(context, "/network/securitygroup/apply");

    for (const nic of list(body, "nics") as Body[]) {
      host.securityGroupNics.set(field(nic, "nicUuid"), list(nic, "rules"));
    }

    const remoteGroups = (body.remoteGroups ?? {}) as Record<string, string[]>;

    for (const [groupUuid, ips] of Object.entries(remoteGroups)) {
      host.remoteGroups.set(groupUuid, ips);
    }

    return {};
  },
  "/network/securitygroup/remove": (context, body) => {
    const host = hostOf(context, "/network/securitygroup/remove");

    for (const nicUuid of list(body, "nicUuids")) {
      host.securityGroupNics.delete(String(nicUuid));
    }

    return {};
  },
};
