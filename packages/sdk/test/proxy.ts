import {
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";

/** What the proxy saw of one request. */
export interface ProxiedRequest {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
}

/**
 * An HTTP proxy on loopback in front of the test server that can cut connections: `dropReply`
 * forwards a request, lets the server reply, then destroys the client's socket so the client
 * sees a network failure after the server did the work.
 */
export class FaultyProxy {
  readonly requests: ProxiedRequest[] = [];
  /** Returns true for requests whose reply is dropped after the server handled them. */
  dropReply: (request: ProxiedRequest) => boolean = () => false;
  /** Returns the number of bytes of the reply to forward before cutting the stream. */
  cutStreamAfter: (request: ProxiedRequest) => number | undefined = () => undefined;
  /** Returns true for requests that get the 503 of a node that is still recovering. */
  notReady: (request: ProxiedRequest) => boolean = () => false;
  private server: Server | undefined;

  constructor(private readonly target: string) {}

  async start() {
    this.server = createServer((incoming, outgoing) => this.forward(incoming, outgoing));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop() {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  private forward(incoming: IncomingMessage, outgoing: ServerResponse) {
    const seen = { method: incoming.method!, url: incoming.url!, headers: incoming.headers };
    this.requests.push(seen);

    if (this.notReady(seen)) {
      incoming.resume();
      outgoing.writeHead(503, { "content-type": "application/json" });
      outgoing.end(JSON.stringify({ error: { code: "SYS.1010", description: "not ready" } }));
      return;
    }

    const url = new URL(incoming.url!, this.target);
    const upstream = request(
      url,
      { method: incoming.method, headers: incoming.headers },
      (reply) => {
        if (this.dropReply(seen)) {
          reply.resume();
          reply.on("end", () => incoming.socket.destroy());
          return;
        }

        outgoing.writeHead(reply.statusCode!, reply.headers);
        const limit = this.cutStreamAfter(seen);
        let forwarded = 0;

        reply.on("data", (chunk: Buffer) => {
          outgoing.write(chunk);
          forwarded += chunk.length;

          if (limit !== undefined && forwarded >= limit) {
            reply.destroy();
            incoming.socket.destroy();
          }
        });
        reply.on("end", () => outgoing.end());
      },
    );
    upstream.on("error", () => incoming.socket.destroy());
    // The server keeps an event stream open until its client goes away, so go away with ours.
    outgoing.on("close", () => upstream.destroy());
    incoming.pipe(upstream);
  }
}
