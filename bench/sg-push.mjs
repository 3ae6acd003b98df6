// Security-group push benchmark: the time from a rule change through the REST API until every
// affected simulator host has been sent the new rules. One VM runs on each of `--hosts` simulator
// hosts, all their NICs are in one group, and `--changes` rules are added one after another. The
// job of a rule change finishes only after every host was pushed to, so its duration bounds the
// time until the last host has the rule. The simulator's state is checked after each change.
// The management node and its simulator run in this process, on SQLite.
// Usage: npm run bench -- sg-push [--hosts 100] [--changes 10]
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pino from "pino";
import { percentile } from "./lib/metric-queries.mjs";
import { buildSimulatorCloud, pool } from "./lib/simulator-cloud.mjs";

const { values } = parseArgs({
  options: {
    hosts: { type: "string", default: "100" },
    changes: { type: "string", default: "10" },
  },
});
const hostCount = Number(values.hosts);
const changeCount = Number(values.changes);
const SG_PROVIDER = "536fa586acb4ee94e96aa6fec701c94e";
const ADMIN_PASSWORD = "password";

const { startServer } = await import("../packages/server/dist/server.js");
const { simulatorLink } = await import("../packages/server/dist/simulator/link.js");
const { TstackClient } = await import("@tstack/sdk");

async function call(admin, api, params, path) {
  return (await admin.call(api, { params, path })).inventory;
}

/** Creates one VM on each host and puts all their NICs in one new group; returns the group. */
async function groupOverHosts(admin, cloud) {
  await call(
    admin,
    "attachNetworkServiceToL3Network",
    { networkServices: { [SG_PROVIDER]: ["SecurityGroup"] } },
    { l3NetworkUuid: cloud.l3NetworkUuid },
  );
  const group = await call(admin, "createSecurityGroup", { name: "bench" });
  await call(
    admin,
    "attachSecurityGroupToL3Network",
    {},
    { securityGroupUuid: group.uuid, l3NetworkUuid: cloud.l3NetworkUuid },
  );

  const hosts = (await admin.query("queryHost", [])).inventories.map((host) => host.uuid);
  const nics = [];
  await pool(hosts.length, 10, async (index) => {
    const vm = await call(admin, "createVmInstance", {
      name: `bench-${index}`,
      imageUuid: cloud.imageUuid,
      instanceOfferingUuid: cloud.instanceOfferingUuid,
      l3NetworkUuids: [cloud.l3NetworkUuid],
      hostUuid: hosts[index],
    });
    nics.push(vm.vmNics[0].uuid);
  });
  await call(
    admin,
    "addVmNicToSecurityGroup",
    { vmNicUuids: nics },
    { securityGroupUuid: group.uuid },
  );
  return { groupUuid: group.uuid, hosts, nics };
}

/** Counts the hosts whose simulator state has `ruleCount` rules for each of its NICs. */
async function hostsWithRules(core, nics, ruleCount) {
  const { control } = await simulatorLink(core);
  const states = await control.state();
  const groupNics = new Set(nics);
  return states.filter((state) => {
    const rules = Object.entries(state.securityGroupRules ?? {}).filter(([nic]) =>
      groupNics.has(nic),
    );
    return rules.length > 0 && rules.every(([, list]) => list.length === ruleCount);
  }).length;
}

const dataDir = mkdtempSync(join(tmpdir(), "tstack-bench-sg-"));
const server = await startServer({
  host: "127.0.0.1",
  port: 0,
  dataDir,
  database: join(dataDir, "tstack.db"),
  logLevel: "silent",
  adminPassword: ADMIN_PASSWORD,
  logger: pino({ level: "silent" }),
});
const durations = [];
const reached = [];

try {
  const admin = new TstackClient({ endpoint: server.url, pollIntervalMs: 20 });
  await admin.logInByAccount("admin", ADMIN_PASSWORD);
  const cloud = await buildSimulatorCloud(admin, hostCount);
  const { groupUuid, nics } = await groupOverHosts(admin, cloud);

  for (let change = 1; change <= changeCount; change++) {
    const started = performance.now();
    await call(
      admin,
      "addSecurityGroupRule",
      { rules: [{ type: "Ingress", protocol: "TCP", startPort: change, endPort: change }] },
      { securityGroupUuid: groupUuid },
    );
    durations.push(performance.now() - started);
    reached.push(await hostsWithRules(server.core, nics, change));
  }
} finally {
  await server.stop(5000);
  rmSync(dataDir, { recursive: true, force: true });
}

const p50 = percentile(durations, 50);
const max = Math.max(...durations);
console.log(
  `${changeCount} rule changes pushed to ${hostCount} simulator hosts, load ${loadavg()[0]}`,
);
console.log(`job duration ms: p50 ${p50.toFixed(0)}, max ${max.toFixed(0)}`);
console.log(`hosts with the new rule after each job: ${reached.join(", ")}`);
const complete = reached.every((count) => count === hostCount);
console.log(
  JSON.stringify({
    benchmark: "sg-push",
    hosts: hostCount,
    changes: changeCount,
    p50Ms: Math.round(p50),
    maxMs: Math.round(max),
    complete,
  }),
);
process.exit(complete ? 0 : 1);
