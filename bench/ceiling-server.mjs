// The ceiling of the REST benchmark: a plain Fastify route that returns a constant, started the
// same way as tstack-server so both pay the same process and loopback costs.
import Fastify from "fastify";

const app = Fastify({ logger: false });
const inventory = {
  inventories: [{ uuid: "0".repeat(32), name: "zone", state: "Enabled", type: "zstack" }],
};
app.get("/zstack/v1/zones/:uuid", async () => inventory);
// Silent: the benchmark finds the server by requesting its route, and keeps only logs with content.
await app.listen({ host: "127.0.0.1", port: Number(process.argv[2] ?? 0) });
