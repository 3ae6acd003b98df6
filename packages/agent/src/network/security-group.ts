import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { hostRun, type NetworkHost } from "./host.js";
import { serialize } from "./lock.js";
import { validateUuid } from "./names.js";
import { applyNftScript, deleteTable } from "./nft.js";
import { compileSecurityGroups, securityGroupTables } from "./security-group-rules.js";
import { writeFileAtomic } from "./state.js";
import type { ApplySecurityGroupCmd, NicSecurityRules, RemoveSecurityGroupCmd } from "./types.js";

const REMOTE_GROUPS_FILE = "remote-groups.json";
const LOCK_KEY = "security-groups";

interface SecurityGroupState {
  nics: Map<string, NicSecurityRules>;
  remoteGroups: Record<string, string[]>;
}

function stateDir(host: NetworkHost): string {
  return join(host.stateDir, "security-groups");
}

/**
 * Reads the rules of every NIC on this host. Each NIC's rules are kept in a file, so any apply or
 * remove can rebuild the whole table, also after an agent restart.
 */
async function readState(host: NetworkHost): Promise<SecurityGroupState> {
  const dir = stateDir(host);
  const names = await readdir(dir).catch(() => [] as string[]);
  const nics = new Map<string, NicSecurityRules>();

  for (const name of names.filter((n) => /^[0-9a-f]{32}\.json$/.test(n))) {
    const nic = JSON.parse(await readFile(join(dir, name), "utf8")) as NicSecurityRules;
    nics.set(nic.nicUuid, nic);
  }

  const remoteGroups = await readFile(join(dir, REMOTE_GROUPS_FILE), "utf8")
    .then((text) => JSON.parse(text) as Record<string, string[]>)
    .catch(() => ({}));

  return { nics, remoteGroups };
}

/** Drops remote groups that no NIC's rule names any more, so the file does not grow forever. */
function referencedGroups(state: SecurityGroupState): Record<string, string[]> {
  const named = new Set(
    [...state.nics.values()].flatMap((nic) => nic.rules.map((rule) => rule.remoteGroupUuid)),
  );
  return Object.fromEntries(
    Object.entries(state.remoteGroups).filter(([group]) => named.has(group)),
  );
}

async function writeState(host: NetworkHost, state: SecurityGroupState, previous: Set<string>) {
  const dir = stateDir(host);
  await mkdir(dir, { recursive: true });

  for (const nic of state.nics.values()) {
    await writeFileAtomic(join(dir, `${nic.nicUuid}.json`), `${JSON.stringify(nic)}\n`);
  }

  for (const uuid of previous) {
    if (!state.nics.has(uuid)) {
      await rm(join(dir, `${uuid}.json`), { force: true });
    }
  }

  const groups = referencedGroups(state);
  await writeFileAtomic(join(dir, REMOTE_GROUPS_FILE), `${JSON.stringify(groups)}\n`);
}

/**
 * Loads the tables for `state`, or deletes them when no NIC has rules left. Bridged IPv4 and IPv6
 * must pass the inet hooks for the conntrack mark, so br_netfilter is switched on for this host.
 * NOTE: this kernel has br_netfilter built in. On a kernel with modules, br_netfilter must be
 * loaded first, or the sysctl fails because /proc/sys/net/bridge does not exist.
 */
async function loadTables(host: NetworkHost, state: SecurityGroupState) {
  if (state.nics.size === 0) {
    const tables = securityGroupTables(host.namespacePrefix);
    await deleteTable(host, "bridge", tables.bridge);
    await deleteTable(host, "inet", tables.conntrack);
    return;
  }

  await hostRun(host, "sysctl", [
    "-qw",
    "net.bridge.bridge-nf-call-iptables=1",
    "net.bridge.bridge-nf-call-ip6tables=1",
  ]);
  await applyNftScript(
    host,
    compileSecurityGroups(
      [...state.nics.values()],
      state.remoteGroups,
      securityGroupTables(host.namespacePrefix),
    ),
  );
}

/** Puts the state on disk, loads it, and restores the previous files when loading fails. */
async function commit(host: NetworkHost, before: SecurityGroupState, after: SecurityGroupState) {
  const previous = new Set(before.nics.keys());
  await writeState(host, after, previous);

  try {
    await loadTables(host, after);
  } catch (error) {
    await writeState(host, before, new Set(after.nics.keys()));
    throw error;
  }
}

/**
 * Replaces the security-group rules of the listed NICs and the members of the listed remote
 * groups, then reloads every NIC's chains in one nft transaction. Ingress is dropped unless a rule
 * allows it, and egress is open until a NIC has an egress rule. ARP, DHCP, requests to the
 * metadata service and packets of established connections always pass.
 */
export function applySecurityGroups(host: NetworkHost, cmd: ApplySecurityGroupCmd) {
  return serialize(LOCK_KEY, () => applyLocked(host, cmd));
}

async function applyLocked(host: NetworkHost, cmd: ApplySecurityGroupCmd) {
  const before = await readState(host);
  const after: SecurityGroupState = {
    nics: new Map(before.nics),
    remoteGroups: { ...before.remoteGroups },
  };

  for (const nic of cmd.nics) {
    validateUuid(nic.nicUuid, "VM NIC uuid");
    after.nics.set(nic.nicUuid, nic);
  }

  for (const [group, members] of Object.entries(cmd.remoteGroups)) {
    after.remoteGroups[validateUuid(group, "remote group uuid")] = members;
  }

  // Compiling first rejects a bad rule before anything on disk or in the kernel changes.
  compileSecurityGroups([...after.nics.values()], after.remoteGroups);
  await commit(host, before, after);
  host.logger.info({ nicUuids: cmd.nics.map((n) => n.nicUuid) }, "security groups applied");
}

/** Removes the chains of the listed NICs; their traffic is then no longer filtered. */
export function removeSecurityGroups(host: NetworkHost, cmd: RemoveSecurityGroupCmd) {
  return serialize(LOCK_KEY, () => removeLocked(host, cmd));
}

async function removeLocked(host: NetworkHost, cmd: RemoveSecurityGroupCmd) {
  const before = await readState(host);
  const after: SecurityGroupState = {
    nics: new Map(before.nics),
    remoteGroups: before.remoteGroups,
  };

  for (const uuid of cmd.nicUuids) {
    after.nics.delete(validateUuid(uuid, "VM NIC uuid"));
  }

  await commit(host, before, after);
  host.logger.info({ nicUuids: cmd.nicUuids }, "security groups removed");
}
