/**
 * Metadata server for one L3 network, run by the agent inside the L3's DHCP namespace as
 * `node metadata-server.js --dir DIR --address ADDRESS --port PORT --pid-file FILE`.
 * It serves each guest from DIR/<guest IPv4 address>/, files the agent writes, so a guest only
 * ever receives its own data. It imports nothing but Node's standard library so it runs on its own.
 */
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { join } from "node:path";
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

  const file = ROUTES[path];
  const body =
    file !== undefined && address !== undefined
      ? await readFile(join(dir, address, file)).catch(() => undefined)
      : undefined;

  if (body === undefined) {
    response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }

  response.writeHead(200, { "content-type": "text/plain" }).end(body);
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

  const dir = values.dir;
  const server = createServer((request, response) => {
    answer(dir, request, response).catch((error: unknown) => {
      console.error(`metadata request ${request.url} failed: ${String(error)}`);
      response.writeHead(500).end();
    });
  });

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

main().catch((error: unknown) => {
  console.error(String(error));
  process.exit(1);
});
