import type { HttpSimulatorControl, NodeState } from "@tstack/simulator";
import type Database from "better-sqlite3";

/** VM states a VM passes through; none may remain once every operation has ended. */
export const INTERMEDIATE_VM_STATES = [
  "Starting",
  "Stopping",
  "Rebooting",
  "Pausing",
  "Resuming",
  "Destroying",
  "Migrating",
  "Expunging",
  "VolumeMigrating",
  "VolumeRecovering",
];

type Row = Record<string, unknown>;
type Query = (sql: string, ...params: unknown[]) => Row[];

/**
 * Counts the VMs in an intermediate state, the API jobs not yet ended and the host cleanups
 * kept for a retry, such as a rollback's destroy that an injected fault failed.
 */
export function countUnsettled(db: Database.Database) {
  const placeholders = INTERMEDIATE_VM_STATES.map(() => "?").join(",");
  const vms = db
    .prepare(`select uuid from vmInstances where state in (${placeholders})`)
    .all(...INTERMEDIATE_VM_STATES);
  const jobs = db.prepare("select uuid from apiJobs where state in ('Pending', 'Running')").all();
  const cleanups = db.prepare("select uuid from hostCleanups").all();
  return vms.length + jobs.length + cleanups.length;
}

/** Lists every broken invariant between the database and the simulator, one line each. */
export async function checkInvariants(
  db: Database.Database,
  control: HttpSimulatorControl,
  hostUuids: string[],
) {
  const all: Query = (sql, ...params) => db.prepare(sql).all(...params) as Row[];
  return [...checkDatabase(all), ...(await checkSimulator(all, control, hostUuids))];
}

/** Lists what is wrong inside the database alone: unsettled rows, capacity and addresses. */
function checkDatabase(all: Query) {
  const violations: string[] = [];

  for (const vm of all("select uuid, state, lastOpDate from vmInstances")) {
    if (INTERMEDIATE_VM_STATES.includes(String(vm.state))) {
      const workflows = workflowsOf(all, String(vm.uuid));
      violations.push(
        `VM ${vm.uuid} is still ${vm.state} since ${vm.lastOpDate}; workflows: ${JSON.stringify(workflows)}`,
      );
    }
  }

  for (const volume of all(
    "select uuid, type, vmInstanceUuid, status, createDate, lastOpDate from volumes where status in ('Creating', 'Deleting')",
  )) {
    violations.push(
      `${volume.type} volume ${volume.uuid} (VM ${volume.vmInstanceUuid}) is still ${volume.status} since ${volume.lastOpDate}, created ${volume.createDate}`,
    );
  }

  for (const host of all("select uuid, status from hosts where status != 'Connected'")) {
    violations.push(`host ${host.uuid} is ${host.status}`);
  }

  for (const image of all("select uuid, status from images where status = 'Downloading'")) {
    violations.push(`image ${image.uuid} is ${image.status}`);
  }

  for (const job of all(
    "select uuid, apiName, state, managementNodeUuid, createDate from apiJobs where state in ('Pending', 'Running')",
  )) {
    violations.push(
      `job ${job.uuid} (${job.apiName}, node ${job.managementNodeUuid}, created ${job.createDate}) never ended: ${job.state}`,
    );
  }

  for (const host of all(
    `select h.uuid, c.totalCpu - c.availableCpu as usedCpu, c.totalMemory - c.availableMemory as usedMemory,
       (select coalesce(sum(cpuNum), 0) from vmInstances v where v.hostUuid = h.uuid) as vmCpu,
       (select coalesce(sum(memorySize), 0) from vmInstances v where v.hostUuid = h.uuid) as vmMemory
     from hosts h join hostCapacities c on c.uuid = h.uuid`,
  )) {
    if (host.usedCpu !== host.vmCpu || host.usedMemory !== host.vmMemory) {
      violations.push(
        `host ${host.uuid} uses ${host.usedCpu} CPUs and ${host.usedMemory} bytes, but its VMs have ${host.vmCpu} and ${host.vmMemory}`,
      );
    }
  }

  for (const row of all(
    "select ip, count(*) as n from vmNics group by l3NetworkUuid, ip having n > 1",
  )) {
    violations.push(`IP ${row.ip} is on ${row.n} NICs`);
  }

  for (const row of all("select mac, count(*) as n from vmNics group by mac having n > 1")) {
    violations.push(`MAC ${row.mac} is on ${row.n} NICs`);
  }

  for (const row of all(
    `select u.ip, u.vmNicUuid from usedIps u where u.usedFor = 'VmNic'
       and not exists (select 1 from vmNics n join vmInstances v on v.uuid = n.vmInstanceUuid where n.uuid = u.vmNicUuid)`,
  )) {
    violations.push(`IP ${row.ip} is held by NIC ${row.vmNicUuid} of no existing VM`);
  }

  return violations;
}

/** Lists where the simulator's VMs, disks, DHCP entries and volumes differ from the database. */
async function checkSimulator(all: Query, control: HttpSimulatorControl, hostUuids: string[]) {
  const violations: string[] = [];
  const vmsByHost = new Map<string, Set<string>>();

  for (const vm of all(
    "select uuid, hostUuid from vmInstances where state in ('Running', 'Paused')",
  )) {
    const set = vmsByHost.get(String(vm.hostUuid)) ?? new Set<string>();
    set.add(String(vm.uuid));
    vmsByHost.set(String(vm.hostUuid), set);
  }

  const volumeUuids = new Set(all("select uuid from volumes").map((row) => String(row.uuid)));
  const macs = new Set(all("select mac from vmNics").map((row) => String(row.mac)));

  for (const node of await control.state()) {
    if (node.kind === "host" && hostUuids.includes(node.uuid)) {
      const expected = vmsByHost.get(node.uuid) ?? new Set<string>();
      const actual = new Set((node.vms ?? []).map((vm) => vm.vmUuid));

      for (const vmUuid of actual) {
        if (!expected.has(vmUuid)) {
          const [row] = all("select state, hostUuid from vmInstances where uuid = ?", vmUuid);
          violations.push(
            `simulator host ${node.uuid} runs VM ${vmUuid}, which the database has as ${JSON.stringify(row ?? null)}; workflows: ${JSON.stringify(workflowsOf(all, vmUuid))}`,
          );
        }
      }

      for (const vmUuid of expected) {
        if (!actual.has(vmUuid)) {
          violations.push(
            `VM ${vmUuid} is running on host ${node.uuid} in the database, but not on the simulator`,
          );
        }
      }

      violations.push(...checkDisks(all, node, expected));

      for (const entries of Object.values(node.dhcp ?? {})) {
        for (const mac of Object.keys(entries)) {
          if (!macs.has(mac)) {
            violations.push(
              `simulator host ${node.uuid} keeps a DHCP entry for unknown MAC ${mac}`,
            );
          }
        }
      }
    }

    if (node.kind === "primary") {
      for (const volume of node.volumes ?? []) {
        if (!volumeUuids.has(volume.volumeUuid)) {
          violations.push(
            `simulator primary storage ${node.uuid} keeps volume ${volume.volumeUuid}, which the database does not have`,
          );
        }
      }
    }
  }

  return violations;
}

/**
 * Lists the VMs that run on a simulator host with other disks than the database's Ready volumes
 * attached to them, which is what the VM got at start plus what was hot plugged and unplugged.
 */
function checkDisks(all: Query, node: NodeState, runningHere: Set<string>) {
  const violations: string[] = [];

  for (const vm of node.vms ?? []) {
    if (!runningHere.has(vm.vmUuid)) {
      continue;
    }

    const expected = all(
      "select installPath from volumes where vmInstanceUuid = ? and status = 'Ready'",
      vm.vmUuid,
    ).map((row) => String(row.installPath));
    const missing = expected.filter((path) => !vm.disks.includes(path));
    const extra = vm.disks.filter((path) => !expected.includes(path));

    if (missing.length > 0 || extra.length > 0) {
      const volumeUuids = [...missing, ...extra].map(
        (path) => /vol-([0-9a-f]{32})/.exec(path)?.[1],
      );
      const workflows = volumeUuids.map((uuid) => (uuid ? workflowsOf(all, uuid) : []));
      violations.push(
        `VM ${vm.vmUuid} on host ${node.uuid} lacks disks ${JSON.stringify(missing)} and has extra disks ${JSON.stringify(extra)} in the simulator; workflows of those volumes: ${JSON.stringify(workflows)}`,
      );
    }
  }

  return violations;
}

/** Lists the workflows whose data names a resource, which show where each one stopped. */
function workflowsOf(all: Query, uuid: string) {
  return all(
    "select name, state, completedSteps, error, managementNodeUuid, lastOpDate from workflows where data like ?",
    `%${uuid}%`,
  );
}
