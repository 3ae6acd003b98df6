// REST core benchmark: 50 concurrent clients on loopback against tstack-server (SQLite) doing
// GET by uuid (driven by wrk) and create-then-poll of zones (a Node client, since each create
// needs its own poll loop), and a plain Fastify route returning a constant as the ceiling.
// Usage: npm run bench -- rest-core [--seconds 10] [--clients 50] [--database postgres://...]
//   [--profile DIR] (writes a V8 CPU profile of tstack-server to DIR when it stops)
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    clients: { type: "string", default: "50" },
    database: { type: "string" },
    profile: { type: "string" },
  },
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const root = new URL("..", import.meta.url).pathname;

async function freePort() {
  const server = createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

async function start(args, env = {}) {
  const port = await freePort();
  const child = spawn(process.execPath, [...args(port)], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;

  for (let attempt = 0; attempt < 200; attempt++) {
    const ok = await fetch(`${url}/zstack/v1/zones/${"0".repeat(32)}`).then(
      () => true,
      () => false,
    );

    if (ok) {
      return { child, url };
    }

    await new Promise((done) => setTimeout(done, 50));
  }

  throw new Error("server did not start");
}

// /proc reports process CPU time in clock ticks.
const TICKS_PER_SECOND = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout);

/** Returns the user plus system CPU seconds a process has used, from /proc. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat(5); the slice starts at field 3.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/**
 * Runs wrk against one GET URL of `server`; wrk is C, so the load generator is not what is
 * measured. Also returns the server's CPU time per request, which other work on the machine
 * disturbs much less than the request rate.
 */
function wrk(server, url, headers = {}) {
  const args = [
    "-t",
    "2",
    "-c",
    String(clients),
    "-d",
    `${seconds}s`,
    "--latency",
    ...Object.entries(headers).flatMap(([name, value]) => ["-H", `${name}: ${value}`]),
    url,
  ];
  const cpuBefore = cpuSeconds(server.child.pid);
  const result = spawnSync("wrk", args, { encoding: "utf8" });
  const cpu = cpuSeconds(server.child.pid) - cpuBefore;

  if (result.status !== 0) {
    throw new Error(`wrk failed: ${result.stderr || result.error}`);
  }

  const number = (pattern) => Number(pattern.exec(result.stdout)?.[1] ?? Number.NaN);
  const millis = (label) => {
    const match = new RegExp(`${label}\\s+([\\d.]+)(us|ms|s)`).exec(result.stdout);
    const scale = { us: 0.001, ms: 1, s: 1000 }[match?.[2] ?? "ms"];
    return match ? Number(match[1]) * scale : Number.NaN;
  };
  const requests = number(/(\d+) requests in/);
  const errors = number(/Non-2xx or 3xx responses: (\d+)/) || 0;
  return {
    requests,
    errors,
    perSecond: number(/Requests\/sec:\s+([\d.]+)/),
    p50: millis("50%"),
    p99: millis("99%"),
    cpuMicros: (cpu / requests) * 1e6,
  };
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

const dataDir = mkdtempSync(join(tmpdir(), "tstack-bench-"));
const serverArgs = (port) => [
  ...(values.profile ? ["--cpu-prof", "--cpu-prof-dir", values.profile] : []),
  "packages/server/dist/main.js",
  "--listen",
  `127.0.0.1:${port}`,
  "--data-dir",
  dataDir,
  "--log-level",
  "warn",
  ...(values.database ? ["--database", values.database] : []),
];
const ceiling = await start((port) => ["bench/ceiling-server.mjs", String(port)]);
const tstack = await start(serverArgs, { TSTACK_ADMIN_PASSWORD: "password" });

try {
  const password = createHash("sha512").update("password").digest("hex");
  const login = await fetch(`${tstack.url}/zstack/v1/accounts/login`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ logInByAccount: { accountName: "admin", password } }),
  });
  const session = JSON.parse(await expectOk(login)).inventory.uuid;
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

  const results = {
    ceiling: wrk(ceiling, `${ceiling.url}/zstack/v1/zones/${zoneUuid}`),
    getByUuid: wrk(tstack, getUrl, { authorization: headers.authorization }),
    createThenPoll: await load(createAndPoll),
  };

  const line = (name, r) =>
    `| ${name} | ${r.requests} | ${r.errors} | ${r.perSecond.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.cpuMicros?.toFixed(0) ?? "-"} |`;
  console.log(
    `\nREST core, ${clients} clients, ${seconds} s each, database ${values.database ? "PostgreSQL" : "SQLite"}\n`,
  );
  console.log(
    "| workload | requests | errors | req/s | p50 ms | p99 ms | server CPU µs/request |\n| --- | --- | --- | --- | --- | --- | --- |",
  );
  console.log(line("plain Fastify constant (ceiling)", results.ceiling));
  console.log(line("GET /zones/{uuid}", results.getByUuid));
  console.log(line("POST /zones then poll to 200", results.createThenPoll));
  console.log(
    `\nGET by uuid reaches ${((results.getByUuid.perSecond / results.ceiling.perSecond) * 100).toFixed(0)}% of the ceiling.`,
  );
} finally {
  ceiling.child.kill("SIGTERM");
  tstack.child.kill("SIGTERM");
  await new Promise((done) => setTimeout(done, 500));
  rmSync(dataDir, { recursive: true, force: true });
}
