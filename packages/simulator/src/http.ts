import type { ServerResponse } from "node:http";

/** Sends a JSON reply unless the socket is gone. */
export function send(response: ServerResponse, status: number, body: unknown) {
  if (response.headersSent || response.destroyed) {
    return;
  }

  const text = JSON.stringify(body);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  response.end(text);
}
