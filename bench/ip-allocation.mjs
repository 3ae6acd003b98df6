// IP allocation benchmark: N concurrent VM NIC allocations on one L3 network with a /22 range,
// once per strategy (first-available and random), on SQLite and on a throwaway PostgreSQL cluster.
// Each allocation is the NIC service's `allocateNics` in its own transaction, as the VM create
// workflow calls it, inside a management node started in this process. Afterwards the database
// is queried for duplicate IPs and MACs.
// Usage: npm run bench -- ip-allocation [--nics 1000] [--dialects sqlite,postgres]
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pino from "pino";
import { percentile } from "./lib/metric-queries.mjs";
import { startThrowawayPostgres } from "./lib/postgres.mjs";

const { values } = parseArgs({
  options: {
    nics: { type: "string", default: "1000" },
    dialects: { type: "string", default: "sqlite,postgres" },
  },
});
const nicCount = Number(values.nics);
const STRATEGIES = ["FirstAvailableIpAllocatorStrategy", "RandomIpAllocatorStrategy"];
const CIDRS = ["10.90.0.0/22", "10.91.0.0/22"];
const ADMIN_PASSWORD = "password";
const ACCOUNT_UUID = "36c27e8ff05c4780bf6d2fa65700f22e";

const { startServer } = await import("../packages/server/dist/server.js");
const { TstackClient } = await import("@tstack/sdk");

async function create(admin, api, params, path) {
  return (await admin.call(api, { params, path })).inventory;
}

async function makeL3(admin, zoneUuid, strategy, cidr) {
  const l2 = await create(admin, "createL2NoVlanNetwork", { name: `bench-${strategy}`, zoneUuid });
  const l3 = await create(admin, "createL3Network", {
    name: `bench-${strategy}`,
    l2NetworkUuid: l2.uuid,
    systemTags: [`ipAllocationStrategy::${strategy}`],
  });
  await create(
    admin,
    "addIpRangeByNetworkCidr",
    { name: "bench", networkCidr: cidr },
    { l3NetworkUuid: l3.uuid },
  );
  return l3.uuid;
}

/** Starts all allocations at once; each records its own latency. */
async function allocateConcurrently(core, l3NetworkUuid) {
  const latencies = [];
  const failures = [];
  const started = performance.now();

  await Promise.all(
    Array.from({ length: nicCount }, async () => {
      const begin = performance.now();

      try {
        await core.transact((tx) =>
          core.services.nics.allocateNics(tx, {
            vmUuid: randomUUID().replaceAll("-", ""),
            accountUuid: ACCOUNT_UUID,
            l3NetworkUuids: [l3NetworkUuid],
            staticIps: {},
          }),
        );
        latencies.push(performance.now() - begin);
      } catch (error) {
        failures.push(error.message);
      }
    }),
  );

  return { seconds: (performance.now() - started) / 1000, latencies, failures };
}

/** Counts NICs, and IPs and MACs held by more than one NIC or used-address row. */
async function checkDuplicates(core, l3NetworkUuid) {
  const nics = await core.kysely
    .selectFrom("vmNics")
    .select(["ip", "mac"])
    .where("l3NetworkUuid", "=", l3NetworkUuid)
    .execute();
  const used = await core.kysely
    .selectFrom("usedIps")
    .select("ip")
    .where("l3NetworkUuid", "=", l3NetworkUuid)
    .execute();
  const duplicates = (list) => list.length - new Set(list).size;
  return {
    nics: nics.length,
    duplicateIps: duplicates(nics.map((nic) => nic.ip)),
    duplicateMacs: duplicates(nics.map((nic) => nic.mac)),
    duplicateUsedIps: duplicates(used.map((row) => row.ip)),
  };
}

async function runDialect(dialect) {
  const dataDir = mkdtempSync(join(tmpdir(), "tstack-bench-ip-"));
  const postgres = dialect === "postgres" ? await startThrowawayPostgres() : undefined;
  const results = [];

  try {
    const server = await startServer({
      host: "127.0.0.1",
      port: 0,
      dataDir,
      database: postgres?.url ?? join(dataDir, "tstack.db"),
      logLevel: "silent",
      adminPassword: ADMIN_PASSWORD,
      logger: pino({ level: "silent" }),
    });

    try {
      const admin = new TstackClient({ endpoint: server.url, pollIntervalMs: 20 });
      await admin.logInByAccount("admin", ADMIN_PASSWORD);
      const zone = await create(admin, "createZone", { name: "bench-ip" });

      for (const [index, strategy] of STRATEGIES.entries()) {
        const l3 = await makeL3(admin, zone.uuid, strategy, CIDRS[index]);
        console.error(`${dialect}: ${nicCount} allocations with ${strategy}`);
        const run = await allocateConcurrently(server.core, l3);
        const check = await checkDuplicates(server.core, l3);
        results.push({ dialect, strategy, ...summarize(run), ...check });
      }
    } finally {
      await server.stop(5000);
    }
  } finally {
    await postgres?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }

  return results;
}

function summarize(run) {
  return {
    allocated: run.latencies.length,
    failed: run.failures.length,
    firstFailure: run.failures[0] ?? null,
    seconds: Number(run.seconds.toFixed(2)),
    allocationsPerSecond: Math.round(run.latencies.length / run.seconds),
    p50Ms: Number(percentile(run.latencies, 50).toFixed(1)),
    p99Ms: Number(percentile(run.latencies, 99).toFixed(1)),
  };
}

const results = [];

for (const dialect of values.dialects.split(",")) {
  results.push(...(await runDialect(dialect)));
}

console.log(`${nicCount} concurrent NIC allocations on one /22 per run, load ${loadavg()[0]}`);
console.log(
  "dialect   strategy                           alloc/s  p50 ms   p99 ms  failed  dup IP  dup MAC",
);

for (const row of results) {
  console.log(
    [
      row.dialect.padEnd(9),
      row.strategy.padEnd(34),
      String(row.allocationsPerSecond).padStart(7),
      String(row.p50Ms).padStart(7),
      String(row.p99Ms).padStart(8),
      String(row.failed).padStart(7),
      String(row.duplicateIps + row.duplicateUsedIps).padStart(7),
      String(row.duplicateMacs).padStart(8),
    ].join(" "),
  );
}

const clean = results.every(
  (row) =>
    row.failed === 0 &&
    row.nics === nicCount &&
    row.duplicateIps === 0 &&
    row.duplicateUsedIps === 0 &&
    row.duplicateMacs === 0,
);
console.log(JSON.stringify({ benchmark: "ip-allocation", nics: nicCount, clean, results }));
process.exit(clean ? 0 : 1);
