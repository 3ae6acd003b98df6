// Seeds hosts and VMs for the read-scale benchmark with direct SQL into a stopped server's
// database. The rows are the ones addHost and createVmInstance write (resource row, index row in
// `resources`, host capacity), owned by the admin account. Two fields differ from what the API
// would store, because nothing reads them here: agentSecret is a placeholder instead of a
// sealed secret, and VMs have no root volume or NICs. Hosts and VMs are of the Simulator
// hypervisor type, which the host tracker and the VM tracer skip, so the server never tries to
// reach the made-up management IPs.
import { randomUUID } from "node:crypto";
import Sqlite from "better-sqlite3";
import pg from "pg";

const GIB = 1024 ** 3;
const HOST_CPUS = 64;
const HOST_MEMORY = 512 * GIB;
// On each host, one VM in five is Stopped (no host, only lastHostUuid); the others run.
const STOPPED_EVERY = 5;

const newUuid = () => randomUUID().replaceAll("-", "");

function resourceRow(type, row) {
  return {
    uuid: row.uuid,
    resourceType: type,
    name: row.name,
    accountUuid: row.accountUuid,
    createDate: row.createDate,
  };
}

/**
 * Builds the rows: `counts.hosts` hosts spread over the clusters, and `counts.vms` VMs spread
 * over the hosts, created one second apart so that sorting by createDate has no ties.
 */
function buildRows(counts, infrastructure, accountUuid) {
  const start = Date.now() - counts.vms * 1000;
  const stamp = (offset) => new Date(start + offset * 1000).toISOString();
  const resourceColumns = (name, index) => ({
    uuid: newUuid(),
    name,
    description: null,
    accountUuid,
    createDate: stamp(index),
    lastOpDate: stamp(index),
    version: 0,
  });
  const hosts = [];
  const vms = [];
  const used = new Map();

  for (let index = 0; index < counts.hosts; index++) {
    const cluster = infrastructure.clusters[index % infrastructure.clusters.length];
    hosts.push({
      ...resourceColumns(`host-${index}`, index),
      zoneUuid: infrastructure.zone.uuid,
      clusterUuid: cluster.uuid,
      // 198.18.0.0/15 is the IPv4 range set aside for benchmark tests. Nothing connects to it.
      managementIp: `198.18.${index >> 8}.${index & 255}`,
      hypervisorType: "Simulator",
      state: "Enabled",
      // No agent runs for these hosts. Connected hosts would get monitoring configs and VM syncs
      // that fail for each of them while the bench measures reads.
      status: "Disconnected",
      architecture: "x86_64",
      username: null,
      sshPort: 22,
      credential: null,
      agentSecret: "read-scale-placeholder",
      agentPort: 7070,
      facts: null,
      accelerator: null,
      lastError: null,
    });
  }

  for (let index = 0; index < counts.vms; index++) {
    const host = hosts[index % hosts.length];
    const running = Math.floor(index / hosts.length) % STOPPED_EVERY !== 0;
    const cpuNum = 1 + (index % 4);
    const memorySize = cpuNum * GIB;
    vms.push({
      ...resourceColumns(`vm-${index}`, index),
      zoneUuid: infrastructure.zone.uuid,
      clusterUuid: host.clusterUuid,
      hostUuid: running ? host.uuid : null,
      lastHostUuid: host.uuid,
      imageUuid: null,
      instanceOfferingUuid: infrastructure.offering.uuid,
      rootVolumeUuid: null,
      defaultL3NetworkUuid: null,
      type: "UserVm",
      hypervisorType: "Simulator",
      state: running ? "Running" : "Stopped",
      cpuNum,
      memorySize,
      platform: "Linux",
      allocatorStrategy: "DefaultHostAllocatorStrategy",
      expungeDate: null,
    });

    if (running) {
      const sum = used.get(host.uuid) ?? { cpu: 0, memory: 0 };
      used.set(host.uuid, { cpu: sum.cpu + cpuNum, memory: sum.memory + memorySize });
    }
  }

  const capacities = hosts.map((host) => {
    const sum = used.get(host.uuid) ?? { cpu: 0, memory: 0 };
    return {
      uuid: host.uuid,
      totalCpu: HOST_CPUS,
      availableCpu: HOST_CPUS - sum.cpu,
      cpuNum: HOST_CPUS,
      totalMemory: HOST_MEMORY,
      availableMemory: HOST_MEMORY - sum.memory,
      totalPhysicalMemory: HOST_MEMORY,
      availablePhysicalMemory: HOST_MEMORY,
    };
  });

  const resources = [
    ...hosts.map((host) => resourceRow("Host", host)),
    ...vms.map((vm) => resourceRow("VmInstance", vm)),
  ];
  return { hosts, capacities, vms, resources };
}

function insertSqlite(path, tables) {
  const db = new Sqlite(path);

  try {
    db.pragma("foreign_keys = ON");
    db.transaction(() => {
      for (const [table, rows] of tables) {
        const columns = Object.keys(rows[0]);
        const statement = db.prepare(
          `insert into "${table}" (${columns.map((column) => `"${column}"`).join(", ")}) values (${columns.map((column) => `@${column}`).join(", ")})`,
        );

        for (const row of rows) {
          statement.run(row);
        }
      }
    })();
    db.pragma("wal_checkpoint(TRUNCATE)");
  } finally {
    db.close();
  }
}

// PostgreSQL takes at most 65,535 parameters per statement.
const POSTGRES_BATCH_ROWS = 1000;

async function insertPostgres(url, tables) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();

  try {
    await client.query("begin");

    for (const [table, rows] of tables) {
      const columns = Object.keys(rows[0]);

      for (let offset = 0; offset < rows.length; offset += POSTGRES_BATCH_ROWS) {
        const batch = rows.slice(offset, offset + POSTGRES_BATCH_ROWS);
        const parameters = [];
        const tuples = batch.map((row) => {
          const placeholders = columns.map((column) => {
            parameters.push(row[column]);
            return `$${parameters.length}`;
          });
          return `(${placeholders.join(", ")})`;
        });
        await client.query(
          `insert into "${table}" (${columns.map((column) => `"${column}"`).join(", ")}) values ${tuples.join(", ")}`,
          parameters,
        );
      }
    }

    await client.query("commit");
    await client.query("analyze");
  } catch (error) {
    await client.query("rollback");
    throw error;
  } finally {
    await client.end();
  }
}

async function adminAccountUuid(database) {
  const query = `select uuid from accounts where name = 'admin'`;

  if (database.startsWith("postgres")) {
    const client = new pg.Client({ connectionString: database });
    await client.connect();

    try {
      return (await client.query(query)).rows[0].uuid;
    } finally {
      await client.end();
    }
  }

  const db = new Sqlite(database, { readonly: true });

  try {
    return db.prepare(query).get().uuid;
  } finally {
    db.close();
  }
}

/**
 * Inserts the hosts and VMs into `database` (an SQLite path or a postgres:// URL) of a stopped
 * server. Returns the uuids the benchmark requests.
 */
export async function seedReadScale(database, { hosts, vms, zone, clusters, offering }) {
  const accountUuid = await adminAccountUuid(database);
  const rows = buildRows({ hosts, vms }, { zone, clusters, offering }, accountUuid);
  const tables = [
    ["hosts", rows.hosts],
    ["hostCapacities", rows.capacities],
    ["vmInstances", rows.vms],
    ["resources", rows.resources],
  ];

  if (database.startsWith("postgres")) {
    await insertPostgres(database, tables);
  } else {
    insertSqlite(database, tables);
  }

  return {
    vmUuids: rows.vms.map((vm) => vm.uuid),
    hostUuids: rows.hosts.map((host) => host.uuid),
    clusterUuids: clusters.map((cluster) => cluster.uuid),
  };
}
