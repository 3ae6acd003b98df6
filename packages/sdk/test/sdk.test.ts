import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import {
  ApiRequestError,
  type CanonicalEvent,
  ConnectionError,
  parseEvents,
  TstackClient,
} from "@tstack/sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../server/test/harness.js";
import { FaultyProxy } from "./proxy.js";

interface Inventory {
  uuid: string;
  name: string;
  state: string;
}

let t: TestServer;
let proxy: FaultyProxy | undefined;

beforeAll(async () => {
  t = await startTestServer("sqlite");
});

afterAll(async () => {
  await t?.stop();
});

afterEach(async () => {
  await proxy?.stop();
  proxy = undefined;
});

async function clientThroughProxy() {
  proxy = new FaultyProxy(t.server.url);
  const endpoint = await proxy.start();
  return new TstackClient({
    endpoint,
    session: t.admin.session,
    pollIntervalMs: 20,
    retryDelayMs: 10,
  });
}

describe("idempotent retry", () => {
  it("creates once when the reply of a create is lost", async () => {
    const client = await clientThroughProxy();
    let dropped = 0;
    proxy!.dropReply = (request) => request.method === "POST" && dropped++ === 0;

    const reply = await client.call<{ inventory: Inventory }>("createZone", {
      params: { name: "retried-zone" },
    });

    const posts = proxy!.requests.filter((request) => request.method === "POST");
    expect(posts).toHaveLength(2);
    expect(posts[0]!.headers["idempotency-key"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(posts[1]!.headers["idempotency-key"]).toBe(posts[0]!.headers["idempotency-key"]);
    const zones = await t.admin.query<Inventory>("queryZone", ["name=retried-zone"]);
    expect(zones.inventories.map((zone) => zone.uuid)).toEqual([reply.inventory.uuid]);
  });

  it("sends a new key for each new write", async () => {
    const client = await clientThroughProxy();
    await client.call("createZone", { params: { name: "key-a" } });
    await client.call("createZone", { params: { name: "key-b" } });

    const keys = proxy!.requests
      .filter((request) => request.method === "POST")
      .map((request) => request.headers["idempotency-key"]);
    expect(keys).toHaveLength(2);
    expect(keys[0]).not.toBe(keys[1]);
  });

  it("throws ConnectionError once retries run out", async () => {
    const closed = createServer();
    closed.listen(0, "127.0.0.1");
    await once(closed, "listening");
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await once(closed, "close");
    const client = new TstackClient({
      endpoint: `http://127.0.0.1:${port}`,
      session: "0".repeat(32),
      retryDelayMs: 1,
    });

    const failure = client.call("createZone", { params: { name: "nowhere" } });

    await expect(failure).rejects.toBeInstanceOf(ConnectionError);
    await expect(failure).rejects.toThrow(
      /failed to reach http:\/\/127\.0\.0\.1:\d+\/zstack\/v1\/zones/,
    );
  });
});

describe("job polling", () => {
  it("waits out a node that is still recovering", async () => {
    const client = await clientThroughProxy();
    let refused = 0;
    proxy!.notReady = (request) => request.url.includes("/api-jobs/") && refused++ < 2;

    const reply = await client.call<{ inventory: Inventory }>("createZone", {
      params: { name: "polled-zone" },
    });

    expect(reply.inventory.name).toBe("polled-zone");
    expect(refused).toBeGreaterThan(2);
  });
});

describe("job cancellation", () => {
  it("cancels the job on the server when the signal aborts", async () => {
    const zone = (
      await t.admin.call<{ inventory: Inventory }>("createZone", { params: { name: "blocked" } })
    ).inventory;
    // Hold the zone's queue so the state change stays Running until the test lets it go.
    let release!: () => void;
    const held = t.server.core.queues.run(
      `resource:${zone.uuid}`,
      () => new Promise<void>((resolve) => (release = resolve)),
    );
    const controller = new AbortController();
    let jobUuid = "";

    const waiting = t.admin.call("changeZoneState", {
      path: { uuid: zone.uuid },
      params: { stateEvent: "disable" },
      signal: controller.signal,
      onProgress(job) {
        jobUuid = job.uuid;
        controller.abort(new Error("stopped by the test"));
      },
    });

    await expect(waiting).rejects.toThrow("stopped by the test");
    release();
    await held;
    const jobs = await t.admin.query<{ state: string }>("queryApiJob", [`uuid=${jobUuid}`]);
    expect(jobs.inventories[0]?.state).not.toBe("Running");
    expect(jobs.inventories[0]?.state).not.toBe("Succeeded");
    const after = await t.admin.query<Inventory>("queryZone", [`uuid=${zone.uuid}`]);
    expect(after.inventories[0]?.state).toBe("Enabled");
  });

  it("reports a job that already ended as not cancelled", async () => {
    const reply = await t.admin.call<{ location: string }>("createZone", {
      params: { name: "ended" },
      noWait: true,
    });
    await t.admin.waitForJob(reply.location);
    const jobUuid = reply.location.split("/api-jobs/")[1]!;

    expect(await t.admin.cancelJob(jobUuid)).toBe(false);
  });
});

describe("event stream", () => {
  it("replays events after lastEventId", async () => {
    const zone = (
      await t.admin.call<{ inventory: Inventory }>("createZone", { params: { name: "evented" } })
    ).inventory;
    await t.server.core.relay.settle();
    const events: CanonicalEvent[] = [];

    for await (const event of t.admin.events({ lastEventId: 0 })) {
      events.push(event);

      if (event.resourceUuid === zone.uuid) {
        break;
      }
    }

    expect(events.at(-1)?.path).toBe("/zone/create");
    expect(events.map((event) => event.id)).toEqual(
      [...events.map((event) => event.id)].sort((a, b) => a - b),
    );
  });

  it("resumes with Last-Event-ID after the connection drops", async () => {
    const first = await t.admin.call<{ inventory: Inventory }>("createZone", {
      params: { name: "before-drop" },
    });
    await t.admin.call("changeZoneState", {
      path: { uuid: first.inventory.uuid },
      params: { stateEvent: "disable" },
    });
    await t.server.core.relay.settle();
    const client = await clientThroughProxy();
    let streams = 0;
    // The first stream is cut inside the replay, after the ": connected" comment and some events.
    proxy!.cutStreamAfter = (request) =>
      request.url.startsWith("/zstack/v1/events") && streams++ === 0 ? 400 : undefined;
    const seen: number[] = [];

    for await (const event of client.events({ lastEventId: 0, reconnectDelayMs: 10 })) {
      seen.push(event.id);

      if (event.resourceUuid === first.inventory.uuid && event.path === "/zone/state/change") {
        break;
      }
    }

    const streamRequests = proxy!.requests.filter((request) => request.url.includes("/events"));
    expect(streamRequests.length).toBeGreaterThanOrEqual(2);
    expect(streamRequests[1]!.headers["last-event-id"]).toBeDefined();
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(Array.from({ length: seen.length }, (_, index) => index + 1));
  });

  it("throws ApiRequestError for an invalid session", async () => {
    const client = new TstackClient({ endpoint: t.server.url, session: "f".repeat(32) });

    await expect(client.events().next()).rejects.toMatchObject({ code: "ID.1001" });
  });

  it("parses frames split across chunks", async () => {
    async function* chunks() {
      yield ": connected\r\n\r\nid: 7\nevent: /a\nda";
      yield 'ta: {"id":7,"path":"/a"}\n\n: heartbeat\n\n';
    }
    const events: unknown[] = [];

    for await (const event of parseEvents(chunks())) {
      events.push(event);
    }

    expect(events).toEqual([{ id: 7, path: "/a" }]);
  });
});

describe("errors", () => {
  it("carries code, description and details", async () => {
    const failure = t.admin.call("createZone", { params: { name: "" } });

    await expect(failure).rejects.toBeInstanceOf(ApiRequestError);
    await expect(failure).rejects.toMatchObject({
      code: "SYS.1007",
      description: "One or more API arguments are invalid",
      status: 400,
    });
    await expect(failure).rejects.toHaveProperty("details", expect.stringContaining("name"));
  });
});

describe("sessions", () => {
  it("renews and validates a session, then logs out", async () => {
    const client = t.client();
    await client.logInByAccount("admin", "password");

    const renewed = await client.renewSession(3600);
    expect(renewed.uuid).toBe(client.session);
    expect(await client.validateSession()).toBe(true);
    const session = client.session!;
    await client.logOut();
    expect(await new TstackClient({ endpoint: t.server.url, session }).validateSession()).toBe(
      false,
    );
  });
});
