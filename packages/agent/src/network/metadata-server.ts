/**
 * Metadata server for one L3 network, run by the agent inside the L3's DHCP namespace as
 * `node metadata-server.js --dir DIR --address ADDRESS --port PORT --pid-file FILE`.
 * It serves each guest from DIR/<guest IPv4 address>/, files the agent writes, so a guest only
 * ever receives its own data. It imports nothing but Node's standard library so it runs on its own.
 *
 * Two layouts of the same files: EC2-style paths under /latest/, and a NoCloud seed under
 * /nocloud/ for cloud-init booted with `ds=nocloud-net;s=http://169.254.169.254/nocloud/`.
 */
import { realpathSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const ROUTES: Record<string, string> = {
  "/latest/user-data": "user-data",
  "/latest/meta-data/hostname": "hostname",
  "/latest/meta-data/instance-id": "instance-id",
};

const IPV4_PATTERN = /^\d{1,3}(\.\d{1,3}){3}$/;

function guestAddress(request: IncomingMessage): string | undefined {
  const remote = (request.socket.remoteAddress ?? "").replace(/^::ffff:/, "");
  return IPV4_PATTERN.test(remote) ? remote : undefined;
}

/** Reads the body the guest at `address` receives for `path`, or undefined for a 404. */
async function document(dir: string, address: string, path: string) {
  const read = (file: string) => readFile(join(dir, address, file)).catch(() => undefined);
  const file = ROUTES[path];

  if (file !== undefined) {
    return read(file);
  }

  if (!path.startsWith("/nocloud/")) {
    return undefined;
  }

  // The agent writes an instance id for every guest it has metadata for, so a guest without one
  // has no seed either.
  const instanceId = await read("instance-id");

  if (instanceId === undefined) {
    return undefined;
  }

  switch (path) {
    case "/nocloud/meta-data":
      return nocloudMetaData(String(instanceId), String((await read("hostname")) ?? ""));
    case "/nocloud/user-data":
      // cloud-init rejects a NoCloud seed without user-data, so no user data is an empty config.
      return (await read("user-data")) ?? "#cloud-config\n";
    case "/nocloud/vendor-data":
      return "";
    default:
      return undefined;
  }
}

/**
 * NoCloud meta-data. The values are JSON strings, which YAML reads as double-quoted scalars, so a
 * hostname like `1234` or `yes` stays a string.
 */
export function nocloudMetaData(instanceId: string, hostname: string) {
  const lines = [`instance-id: ${JSON.stringify(instanceId)}`];

  if (hostname !== "") {
    lines.push(`local-hostname: ${JSON.stringify(hostname)}`);
  }

  return `${lines.join("\n")}\n`;
}

async function answer(dir: string, request: IncomingMessage, response: ServerResponse) {
  const path = (request.url ?? "/").split("?")[0] ?? "/";
  const address = guestAddress(request);

  if (request.method !== "GET" && request.method !== "HEAD") {
    response.writeHead(405, { allow: "GET, HEAD" }).end();
    return;
  }

  if (path === "/latest/meta-data" || path === "/latest/meta-data/") {
    response.writeHead(200, { "content-type": "text/plain" }).end("hostname\ninstance-id\n");
    return;
  }

  const body = address === undefined ? undefined : await document(dir, address, path);

  if (body === undefined) {
    response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }

  response.writeHead(200, { "content-type": "text/plain" }).end(body);
}

/** Creates the HTTP server that serves every guest from its directory under `dir`, unbound. */
export function createMetadataServer(dir: string): Server {
  return createServer((request, response) => {
    answer(dir, request, response).catch((error: unknown) => {
      console.error(`metadata request ${request.url} failed: ${String(error)}`);
      response.writeHead(500).end();
    });
  });
}

async function main() {
  const { values } = parseArgs({
    options: {
      dir: { type: "string" },
      address: { type: "string" },
      port: { type: "string", default: "80" },
      "pid-file": { type: "string" },
    },
  });

  if (!values.dir || !values.address || !values["pid-file"]) {
    throw new Error(
      "usage: metadata-server --dir DIR --address ADDRESS --port PORT --pid-file FILE",
    );
  }

  const server = createMetadataServer(values.dir);

  server.listen(Number(values.port), values.address, () => {
    writeFile(values["pid-file"]!, `${process.pid}\n`).catch((error: unknown) => {
      console.error(`cannot write pid file: ${String(error)}`);
      process.exit(1);
    });
  });

  process.on("SIGTERM", () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

/** Tells whether Node runs this file as its main script. The module URL has symlinks resolved. */
function isMain() {
  const script = process.argv[1];
  return script !== undefined && import.meta.url === pathToFileURL(realpathSync(script)).href;
}

// Imported by tests, the module only defines the server. Run as a script, it serves.
if (isMain()) {
  main().catch((error: unknown) => {
    console.error(String(error));
    process.exit(1);
  });
}
