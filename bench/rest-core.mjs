// REST core benchmark: 50 concurrent clients on loopback against tstack-server (SQLite) doing
// GET by uuid (driven by wrk) and create-then-poll of zones (a Node client, since each create
// needs its own poll loop), and a plain Fastify route returning a constant as the ceiling.
// Usage: npm run bench -- rest-core [--seconds 10] [--clients 50] [--database postgres://...]
//   [--profile DIR] (writes a V8 CPU profile of tstack-server to DIR when it stops)
//   [--server FILE] (the tstack-server entry point; default packages/server/dist/main.js, so an
//   older build can be measured against the same ceiling)
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
    server: { type: "string", default: "packages/server/dist/main.js" },
  },
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);

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

const dataDir = mkdtempSync(join(tmpdir(), "tstack-bench-"));
const serverArgs = (port) => [
  ...(values.profile ? ["--cpu-prof", "--cpu-prof-dir", values.profile] : []),
  values.server,
  "--listen",
  `127.0.0.1:${port}`,
  "--data-dir",
  dataDir,
  "--log-level",
  "warn",
  ...(values.database ? ["--database", values.database] : []),
];
const ceiling = await startServerProcess((port) => ["bench/ceiling-server.mjs", String(port)]);
const tstack = await startServerProcess(serverArgs, { TSTACK_ADMIN_PASSWORD: "password" });

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

  const load50 = { clients, seconds };
  const results = {
    ceiling: wrk(ceiling, `${ceiling.url}/zstack/v1/zones/${zoneUuid}`, load50),
    getByUuid: wrk(tstack, getUrl, {
      ...load50,
      headers: { authorization: headers.authorization },
    }),
    createThenPoll: await load(createAndPoll),
  };

  console.log(
    `\nREST core, ${clients} clients, ${seconds} s each, database ${values.database ? "PostgreSQL" : "SQLite"}\n`,
  );
  console.log(TABLE_HEADER);
  console.log(tableRow("plain Fastify constant (ceiling)", results.ceiling));
  console.log(tableRow("GET /zones/{uuid}", results.getByUuid));
  console.log(tableRow("POST /zones then poll to 200", results.createThenPoll));
  console.log(
    `\nGET by uuid reaches ${((results.getByUuid.perSecond / results.ceiling.perSecond) * 100).toFixed(0)}% of the ceiling.`,
  );
} finally {
  await stopServerProcess(ceiling);
  await stopServerProcess(tstack);
  rmSync(dataDir, { recursive: true, force: true });
}
