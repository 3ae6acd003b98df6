// REST core benchmark: 50 concurrent clients on loopback against tstack-server (SQLite) doing
// GET by uuid (driven by wrk) and create-then-poll of zones (a Node client, since each create
// needs its own poll loop), and a plain Fastify route returning a constant as the ceiling.
// Usage: npm run bench -- rest-core [--seconds 10] [--clients 50] [--database postgres://...]
//   [--profile DIR] (writes a V8 CPU profile of tstack-server to DIR when it stops)
//   [--server FILE] (the tstack-server entry point, by default packages/server/dist/main.js. Give
//   it more than once to measure several builds one after the other against the same ceiling.)
//   [--runs N] (measures each build N times, each in a new server process. A process settles at
//   one of two speeds; the rest-core section of docs/benchmarks.md explains why.)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  logIn,
  startServerProcess,
  stopServerProcess,
  TABLE_HEADER,
  tableRow,
  wrk,
} from "./lib/harness.mjs";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    clients: { type: "string", default: "50" },
    database: { type: "string" },
    profile: { type: "string" },
    server: { type: "string", multiple: true, default: ["packages/server/dist/main.js"] },
    runs: { type: "string", default: "1" },
  },
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const runs = Number(values.runs);

if (!Number.isInteger(runs) || runs < 1) {
  console.error(`invalid --runs '${values.runs}': expected a whole number of at least 1`);
  process.exit(2);
}

if (values.database && (values.server.length > 1 || runs > 1)) {
  console.error(
    "--database accepts only one --server and one run, because each server needs an empty database. Run the bench once per build.",
  );
  process.exit(2);
}

/** Runs `clients` loops of `request` for `seconds`; returns req/s and latency percentiles in ms. */
async function load(request) {
  const latencies = [];
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;
  const began = performance.now();

  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();

        try {
          await request();
          latencies.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );

  const elapsed = (performance.now() - began) / 1000;
  latencies.sort((a, b) => a - b);
  const pick = (q) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
  return {
    requests: latencies.length,
    errors,
    perSecond: latencies.length / elapsed,
    p50: pick(0.5),
    p99: pick(0.99),
  };
}

async function expectOk(response, status = 200) {
  const body = await response.text();

  if (response.status !== status) {
    throw new Error(`HTTP ${response.status}: ${body}`);
  }

  return body;
}

const serverArgs = (main, dataDir) => (port) => [
  ...(values.profile ? ["--cpu-prof", "--cpu-prof-dir", values.profile] : []),
  main,
  "--listen",
  `127.0.0.1:${port}`,
  "--data-dir",
  dataDir,
  "--log-level",
  "warn",
  ...(values.database ? ["--database", values.database] : []),
];

/** Starts one build of tstack-server on a fresh data directory and measures both workloads. */
async function measureServer(main) {
  const dataDir = mkdtempSync(join(tmpdir(), "tstack-bench-"));
  const tstack = await startServerProcess(serverArgs(main, dataDir), {
    TSTACK_ADMIN_PASSWORD: "password",
  });

  try {
    const session = await logIn(tstack.url, "password");
    const headers = { authorization: `OAuth ${session}`, "content-type": "application/json" };

    const createAndPoll = async () => {
      const accepted = await fetch(`${tstack.url}/zstack/v1/zones`, {
        method: "POST",
        headers,
        body: JSON.stringify({ params: { name: "bench" } }),
      });
      const { location } = JSON.parse(await expectOk(accepted, 202));

      for (;;) {
        const poll = await fetch(location, { headers });
        const body = await poll.text();

        if (poll.status === 200) {
          return JSON.parse(body).inventory.uuid;
        }

        if (poll.status !== 202) {
          throw new Error(`poll returned ${poll.status}: ${body}`);
        }

        await new Promise((done) => setTimeout(done, 5));
      }
    };

    const zoneUuid = await createAndPoll();
    const getUrl = `${tstack.url}/zstack/v1/zones/${zoneUuid}`;
    await expectOk(await fetch(getUrl, { headers }));

    return {
      getByUuid: wrk(tstack, getUrl, {
        clients,
        seconds,
        headers: { authorization: headers.authorization },
      }),
      createThenPoll: await load(createAndPoll),
    };
  } finally {
    await stopServerProcess(tstack);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const ceilingServer = await startServerProcess((port) => [
  "bench/ceiling-server.mjs",
  String(port),
]);
let ceiling;

try {
  ceiling = wrk(ceilingServer, `${ceilingServer.url}/zstack/v1/zones/${"0".repeat(32)}`, {
    clients,
    seconds,
  });
} finally {
  await stopServerProcess(ceilingServer);
}

const builds = [];

for (const main of values.server) {
  for (let run = 1; run <= runs; run++) {
    builds.push({ main, run, ...(await measureServer(main)) });
  }
}

console.log(
  `\nREST core, ${clients} clients, ${seconds} s each, database ${values.database ? "PostgreSQL" : "SQLite"}\n`,
);
console.log(TABLE_HEADER);
console.log(tableRow("plain Fastify constant (ceiling)", ceiling));

// With one measurement the rows keep their short names. With several, each row names its build
// and run.
const measured = (build) => `${build.main}${runs > 1 ? ` run ${build.run}` : ""}`;
const label = (name, build) => (builds.length > 1 ? `${name}, ${measured(build)}` : name);

for (const build of builds) {
  console.log(tableRow(label("GET /zones/{uuid}", build), build.getByUuid));
  console.log(tableRow(label("POST /zones then poll to 200", build), build.createThenPoll));
}

console.log("");

for (const build of builds) {
  const share = (build.getByUuid.perSecond / ceiling.perSecond) * 100;
  console.log(
    `GET by uuid of ${measured(build)} reaches ${share.toFixed(0)}% of the ceiling. Wake-ups of another CPU per request: GET ${build.getByUuid.wakeUpsPerRequest.toFixed(2)}, ceiling ${ceiling.wakeUpsPerRequest.toFixed(2)}.`,
  );
}
