// Helpers shared by the REST benchmarks: start a server process, log in, drive load with wrk and
// read the server's CPU time and memory from /proc.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const root = new URL("../..", import.meta.url).pathname;

export async function freePort() {
  const server = createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

/**
 * Starts `node <args(port)>` on a free loopback port and waits until it responds to HTTP on a
 * ZStack path. Any status counts, so the ceiling server qualifies too.
 */
export async function startServerProcess(args, env = {}) {
  const port = await freePort();
  // The log goes to a file: an unread pipe fills up, and then the server waits forever
  // to write its log.
  const logPath = join(tmpdir(), `tstack-bench-server-${port}.log`);
  const log = openSync(logPath, "w");
  const child = spawn(process.execPath, [...args(port)], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", log, "inherit"],
  });
  closeSync(log);
  const url = `http://127.0.0.1:${port}`;

  for (let attempt = 0; attempt < 1200; attempt++) {
    const ok = await fetch(`${url}/zstack/v1/zones/${"0".repeat(32)}`).then(
      () => true,
      () => false,
    );

    if (ok) {
      return { child, url, logPath };
    }

    if (child.exitCode !== null) {
      break;
    }

    await new Promise((done) => setTimeout(done, 50));
  }

  child.kill("SIGTERM");
  throw new Error(`server ${args(port).join(" ")} did not start within 60 s`);
}

/**
 * Sends SIGTERM and waits for the process to exit. Removes an empty log and names one that is
 * not empty.
 */
export async function stopServerProcess(server) {
  if (server.child.exitCode === null) {
    const exited = new Promise((done) => server.child.once("exit", done));
    server.child.kill("SIGTERM");
    await exited;
  }

  if (statSync(server.logPath).size === 0) {
    rmSync(server.logPath);
  } else {
    console.error(`server log kept: ${server.logPath}`);
  }
}

/** Logs in as `admin` with the SHA-512 of `password` and returns the session uuid. */
export async function logIn(url, password) {
  const response = await fetch(`${url}/zstack/v1/accounts/login`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      logInByAccount: {
        accountName: "admin",
        password: createHash("sha512").update(password).digest("hex"),
      },
    }),
  });
  const body = await response.text();

  if (response.status !== 200) {
    throw new Error(`login failed with HTTP ${response.status}: ${body}`);
  }

  return JSON.parse(body).inventory.uuid;
}

// /proc reports process CPU time in clock ticks.
const TICKS_PER_SECOND = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout);

/** Returns the user plus system CPU seconds a process has used, from /proc. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of proc_pid_stat(5); the slice starts at field 3.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/**
 * Returns the machine's count of function-call interrupts (the `CAL` row of /proc/interrupts),
 * which the kernel sends to wake a thread on another CPU. On a virtual machine each one costs a
 * VM exit. NaN where the row does not exist.
 */
export function wakeUpInterrupts() {
  const row = readFileSync("/proc/interrupts", "utf8")
    .split("\n")
    .find((line) => line.trimStart().startsWith("CAL:"));

  if (!row) {
    return Number.NaN;
  }

  const counts = row
    .trim()
    .split(/\s+/)
    .slice(1)
    .filter((cell) => /^\d+$/.test(cell));
  return counts.reduce((sum, count) => sum + Number(count), 0);
}

/** Returns the resident set size of a process in MiB: `VmRSS` now, or `VmHWM` for the peak. */
export function rssMiB(pid, field = "VmRSS") {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return kib / 1024;
}

/**
 * Runs wrk (2 threads) against `url` on `server`. wrk is C, so the load generator is not what is
 * measured. `script` is a wrk Lua file, for example one that picks a random path per request.
 * Also returns the server's CPU time per request, which other work on the machine disturbs much
 * less than the request rate.
 */
export function wrk(server, url, { clients, seconds, headers = {}, script }) {
  const args = [
    "-t",
    "2",
    "-c",
    String(clients),
    "-d",
    `${seconds}s`,
    "--latency",
    ...Object.entries(headers).flatMap(([name, value]) => ["-H", `${name}: ${value}`]),
    ...(script ? ["-s", script] : []),
    url,
  ];
  const cpuBefore = cpuSeconds(server.child.pid);
  const wakeUpsBefore = wakeUpInterrupts();
  const result = spawnSync("wrk", args, { encoding: "utf8" });
  const cpu = cpuSeconds(server.child.pid) - cpuBefore;
  const wakeUps = wakeUpInterrupts() - wakeUpsBefore;

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
  const errors =
    (number(/Non-2xx or 3xx responses: (\d+)/) || 0) +
    (number(/Socket errors: connect (\d+)/) || 0) +
    (number(/read (\d+), write/) || 0) +
    (number(/timeout (\d+)/) || 0);
  return {
    requests,
    errors,
    perSecond: number(/Requests\/sec:\s+([\d.]+)/),
    p50: millis("50%"),
    p99: millis("99%"),
    cpuMicros: (cpu / requests) * 1e6,
    wakeUpsPerRequest: wakeUps / requests,
  };
}

/** Formats one row of the results table. */
export function tableRow(name, result) {
  const cells = [
    name,
    result.requests,
    result.errors,
    result.perSecond.toFixed(0),
    result.p50.toFixed(2),
    result.p99.toFixed(2),
    result.cpuMicros === undefined ? "-" : result.cpuMicros.toFixed(0),
  ];
  return `| ${cells.join(" | ")} |`;
}

export const TABLE_HEADER =
  "| workload | requests | errors | req/s | p50 ms | p99 ms | server CPU µs/request |\n| --- | --- | --- | --- | --- | --- | --- |";
