import { createServer, type IncomingHttpHeaders } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { sha512Hex } from "@tstack/api";
import { ApiRequestError, type TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dialects, raw, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

async function expectApiError(promise: Promise<unknown>, code: string, detailsPattern?: RegExp) {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(ApiRequestError);
  expect((error as ApiRequestError).code).toBe(code);

  if (detailsPattern) {
    expect((error as ApiRequestError).details).toMatch(detailsPattern);
  }

  return error as ApiRequestError;
}

/** Starts a local HTTP receiver for webhook POSTs. */
async function startReceiver() {
  const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const waiters: Array<() => void> = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      received.push({ headers: request.headers, body });
      response.end("ok");
      for (const wake of waiters.splice(0)) {
        wake();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    async waitFor(
      predicate: (entry: { headers: IncomingHttpHeaders; body: string }) => boolean,
      timeoutMs = 10_000,
    ) {
      const deadline = Date.now() + timeoutMs;

      while (Date.now() < deadline) {
        const found = received.find(predicate);

        if (found) {
          return found;
        }

        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }

      throw new Error("webhook not received in time");
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

describe.each(dialects)("REST contract on %s", (dialect) => {
  let t: TestServer;
  let admin: TstackClient;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = t.admin;
  });

  afterAll(async () => {
    await t?.stop();
  });

  describe("login and sessions", () => {
    it("logs in with the SHA-512 password and rejects a wrong one", async () => {
      const response = await raw(t.server, "PUT", "/accounts/login", {
        body: JSON.stringify({
          logInByAccount: { accountName: "admin", password: sha512Hex("password") },
        }),
        headers: { "content-type": "application/json" },
      });
      expect(response.status).toBe(200);
      expect((response.json.inventory as Inventory).uuid).toMatch(/^[0-9a-f]{32}$/);
      expect((response.json.inventory as Inventory).expiredDate).toMatch(/T.*Z$/);

      await expectApiError(t.client().logInByAccount("admin", "wrong"), "ID.1000");
    });

    it("rejects a clear-text password with a hint", async () => {
      const response = await raw(t.server, "PUT", "/accounts/login", {
        body: JSON.stringify({ logInByAccount: { accountName: "admin", password: "password" } }),
        headers: { "content-type": "application/json" },
      });
      expect(response.status).toBe(400);
      expect((response.json.error as { details: string }).details).toMatch(/SHA-512/);
    });

    it("answers ID.1001 without a session, with a bad one and after logout", async () => {
      const none = await raw(t.server, "GET", "/zones");
      expect(none.status).toBe(401);
      expect((none.json.error as { code: string }).code).toBe("ID.1001");

      const client = t.client();
      await client.logInByAccount("admin", "password");
      await client.query("queryZone");
      const session = client.session!;
      await client.logOut();
      client.session = session;
      await expectApiError(client.query("queryZone"), "ID.1001");
    });

    it("expires a session past its expiry date", async () => {
      const client = t.client();
      await client.logInByAccount("admin", "password");
      await t.server.core.kysely
        .updateTable("sessions")
        .set({ expiredDate: new Date(Date.now() - 1000).toISOString() })
        .where("uuid", "=", client.session!)
        .execute();
      await expectApiError(client.query("queryZone"), "ID.1001", /expired/);

      const valid = await client.call<{ valid: boolean }>("validateSession", {
        path: { sessionUuid: client.session! },
      });
      expect(valid.valid).toBe(false);
    });

    it("renews and validates a session", async () => {
      const client = t.client();
      const session = await client.logInByAccount("admin", "password");
      const renewed = await client.call<{ inventory: { expiredDate: string } }>("renewSession", {
        path: { sessionUuid: session.uuid },
        params: { duration: 86400 },
      });
      expect(Date.parse(renewed.inventory.expiredDate)).toBeGreaterThan(Date.now() + 80_000_000);
      const valid = await client.call<{ valid: boolean }>("validateSession", {
        path: { sessionUuid: session.uuid },
      });
      expect(valid.valid).toBe(true);
    });
  });

  describe("zones and async jobs", () => {
    it("creates a zone with 202 and polls to 200", async () => {
      const accepted = await raw(t.server, "POST", "/zones", {
        body: JSON.stringify({
          params: { name: "zone-a", description: "first" },
          systemTags: ["owner::ops"],
          userTags: ["blue"],
        }),
        headers: { "content-type": "application/json", authorization: `OAuth ${admin.session}` },
      });
      expect(accepted.status).toBe(202);
      const location = String(accepted.json.location);
      expect(location).toContain("/zstack/v1/api-jobs/");
      expect(accepted.json.apiTimeout).toBe(1_800_000);

      const result = (await admin.waitForJob(location)) as { inventory: Inventory };
      expect(result.inventory.name).toBe("zone-a");
      expect(result.inventory.state).toBe("Enabled");
      expect(result.inventory.createDate).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

      const tagged = await admin.query("queryZone", ["__systemTag__=owner::ops"]);
      expect(tagged.inventories.map((zone) => zone.uuid)).toEqual([result.inventory.uuid]);
      const userTagged = await admin.query("queryZone", ["__userTag__=blue"]);
      expect(userTagged.inventories).toHaveLength(1);
    });

    it("honours a caller-chosen resourceUuid and rejects a reused one", async () => {
      const uuid = "a".repeat(32);
      const created = await admin.call<{ inventory: Inventory }>("createZone", {
        params: { name: "fixed", resourceUuid: uuid },
      });
      expect(created.inventory.uuid).toBe(uuid);
      await expectApiError(
        admin.call("createZone", { params: { name: "again", resourceUuid: uuid } }),
        "SYS.1007",
        /already used/,
      );
    });

    it("rejects a reused X-Job-UUID", async () => {
      const jobUuid = "b".repeat(32);
      await admin.call("createZone", {
        params: { name: "job-1" },
        headers: { "X-Job-UUID": jobUuid },
      });
      await expectApiError(
        admin.call("createZone", { params: { name: "job-2" }, headers: { "X-Job-UUID": jobUuid } }),
        "SYS.1007",
        /Duplicate job uuid/,
      );
      await expectApiError(
        admin.call("createZone", {
          params: { name: "job-3" },
          headers: { "X-Job-UUID": "not-a-uuid" },
        }),
        "SYS.1007",
        /X-Job-UUID/,
      );
      const zones = await admin.query("queryZone", ["name?=job-2,job-3"]);
      expect(zones.inventories).toHaveLength(0);
    });

    it("replays an Idempotency-Key and rejects it with another body", async () => {
      const headers = { "Idempotency-Key": "create-zone-idem" };
      const first = await admin.call<{ location: string }>("createZone", {
        params: { name: "idem" },
        headers,
        noWait: true,
      });
      const second = await admin.call<{ location: string }>("createZone", {
        params: { name: "idem" },
        headers,
        noWait: true,
      });
      expect(second.location).toBe(first.location);
      await admin.waitForJob(first.location);
      const zones = await admin.query("queryZone", ["name=idem"]);
      expect(zones.inventories).toHaveLength(1);

      const conflict = await expectApiError(
        admin.call("createZone", { params: { name: "other" }, headers }),
        "SYS.1011",
        /already used for a different request/,
      );
      expect(conflict.status).toBe(409);
    });

    it("replays the first job's timeout", async () => {
      const send = (timeout: string) =>
        raw(t.server, "POST", "/zones", {
          body: JSON.stringify({ params: { name: "idem-timeout" } }),
          headers: {
            "content-type": "application/json",
            authorization: `OAuth ${admin.session}`,
            "idempotency-key": "create-zone-timeout",
            "x-api-timeout": timeout,
          },
        });

      const first = await send("90");
      const replayed = await send("30");
      expect(replayed.json.location).toBe(first.json.location);
      expect(first.json.apiTimeout).toBe(90_000);
      expect(replayed.json.apiTimeout).toBe(90_000);
      await admin.waitForJob(String(first.json.location));
    });

    it("rejects an invalid X-API-Timeout", async () => {
      const before = (await admin.query("queryZone", [], { count: true })).total;

      for (const timeout of ["0", "abc", "1.5", "1e3", "0x10", "-1", "999999999"]) {
        const response = await raw(t.server, "POST", "/zones", {
          body: JSON.stringify({ params: { name: "timeout" } }),
          headers: {
            "content-type": "application/json",
            authorization: `OAuth ${admin.session}`,
            "x-api-timeout": timeout,
          },
        });
        expect(response.status, timeout).toBe(400);
        expect(JSON.stringify(response.json), timeout).toContain("invalid X-API-Timeout");
      }

      expect((await admin.query("queryZone", [], { count: true })).total).toBe(before);
    });

    it("runs actions and rejects an unknown action key", async () => {
      const zone = (
        await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "acting" } })
      ).inventory;
      const updated = await admin.call<{ inventory: Inventory }>("updateZone", {
        path: { uuid: zone.uuid },
        params: { name: "acted", description: "changed" },
      });
      expect(updated.inventory.name).toBe("acted");
      expect(updated.inventory.description).toBe("changed");

      const disabled = await admin.call<{ inventory: Inventory }>("changeZoneState", {
        path: { uuid: zone.uuid },
        params: { stateEvent: "disable" },
      });
      expect(disabled.inventory.state).toBe("Disabled");

      const bad = await raw(t.server, "PUT", `/zones/${zone.uuid}/actions`, {
        body: JSON.stringify({ startZone: {} }),
        headers: { "content-type": "application/json", authorization: `OAuth ${admin.session}` },
      });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.json)).toMatch(/unknown action 'startZone'.*updateZone/);

      const badEvent = await raw(t.server, "PUT", `/zones/${zone.uuid}/actions`, {
        body: JSON.stringify({ changeZoneState: { stateEvent: "explode" } }),
        headers: { "content-type": "application/json", authorization: `OAuth ${admin.session}` },
      });
      expect(badEvent.status).toBe(400);
      expect(JSON.stringify(badEvent.json)).toContain("changeZoneState.stateEvent");
    });

    it("answers 404 for an unknown zone before the job starts", async () => {
      const error = await expectApiError(
        admin.call("updateZone", { path: { uuid: "c".repeat(32) }, params: { name: "x" } }),
        "SYS.1003",
      );
      expect(error.status).toBe(404);
    });

    it("answers 404 for unknown users and tags", async () => {
      for (const path of [`/accounts/users/${"c".repeat(32)}`, `/tags/${"c".repeat(32)}`]) {
        const response = await raw(t.server, "DELETE", path, {
          headers: { authorization: `OAuth ${admin.session}` },
        });
        expect(response.status, path).toBe(404);
        expect((response.json.error as { code: string }).code, path).toBe("SYS.1003");
      }
    });

    it("deletes a zone with clusters only in Enforcing mode", async () => {
      const zone = (
        await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "doomed" } })
      ).inventory;
      const cluster = (
        await admin.call<{ inventory: Inventory }>("createCluster", {
          params: { zoneUuid: zone.uuid, name: "c1", hypervisorType: "KVM" },
        })
      ).inventory;
      expect(cluster.zoneUuid).toBe(zone.uuid);

      await expectApiError(
        admin.call("deleteZone", {
          path: { uuid: zone.uuid },
          query: { deleteMode: "Permissive" },
        }),
        "SYS.1006",
        /still has 1 cluster/,
      );
      expect(
        (await admin.query("queryCluster", [`uuid=${cluster.uuid}`])).inventories,
      ).toHaveLength(1);

      await admin.call("deleteZone", {
        path: { uuid: zone.uuid },
        query: { deleteMode: "Enforcing" },
      });
      expect((await admin.query("queryZone", [`uuid=${zone.uuid}`])).inventories).toHaveLength(0);
      expect(
        (await admin.query("queryCluster", [`uuid=${cluster.uuid}`])).inventories,
      ).toHaveLength(0);

      await expectApiError(
        admin.call("deleteZone", { path: { uuid: zone.uuid }, query: { deleteMode: "Sometimes" } }),
        "SYS.1007",
        /deleteMode/,
      );
    });

    it("lets a job be cancelled and polled by query", async () => {
      const jobs = await admin.query<{ apiName: string; state: string }>(
        "queryApiJob",
        ["apiName=createZone", "state=Succeeded"],
        { limit: 1 },
      );
      expect(jobs.inventories[0]?.state).toBe("Succeeded");
      await expectApiError(
        admin.call("cancelApiJob", { path: { uuid: "d".repeat(32) } }),
        "SYS.1003",
      );
    });
  });

  describe("queries", () => {
    let offerings: Inventory[];

    beforeAll(async () => {
      offerings = [];

      for (const [index, name] of ["small", "medium", "large", "xlarge", "tiny_1"].entries()) {
        const created = await admin.call<{ inventory: Inventory }>("createInstanceOffering", {
          params: { name, cpuNum: index + 1, memorySize: (index + 1) * 256 * 1024 * 1024 },
        });
        offerings.push(created.inventory);
      }
    });

    const names = async (
      conditions: string[],
      query: Record<string, string | number | boolean> = {},
    ) => {
      const reply = await admin.query<Inventory>("queryInstanceOffering", conditions, query);
      return reply.inventories.map((offering) => offering.name).sort();
    };

    it("supports every operator", async () => {
      expect(await names(["cpuNum=2"])).toEqual(["medium"]);
      expect(await names(["cpuNum!=2"])).toEqual(["large", "small", "tiny_1", "xlarge"]);
      expect(await names(["cpuNum>3"])).toEqual(["tiny_1", "xlarge"]);
      expect(await names(["cpuNum>=4"])).toEqual(["tiny_1", "xlarge"]);
      expect(await names(["cpuNum<2"])).toEqual(["small"]);
      expect(await names(["cpuNum<=2"])).toEqual(["medium", "small"]);
      expect(await names(["name?=small,large"])).toEqual(["large", "small"]);
      expect(await names(["name!?=small,large,tiny_1"])).toEqual(["medium", "xlarge"]);
      expect(await names(["name~=%large"])).toEqual(["large", "xlarge"]);
      expect(await names(["name!~=%large", "name~=%e%"])).toEqual(["medium"]);
      expect(await names(["name~=tiny\\_1"])).toEqual(["tiny_1"]);
      expect(await names(["description is null", "cpuNum=1"])).toEqual(["small"]);
      expect(await names(["description not null"])).toEqual([]);
    });

    it("pages, sorts, counts and selects fields", async () => {
      const sorted = await admin.query<Inventory>("queryInstanceOffering", [], {
        sort: "-cpuNum",
        limit: 2,
        start: 1,
        replyWithCount: true,
      });
      expect(sorted.inventories.map((offering) => offering.name)).toEqual(["xlarge", "large"]);
      expect(sorted.total).toBe(5);

      const count = await admin.query("queryInstanceOffering", ["cpuNum>1"], { count: true });
      expect(count).toEqual({ total: 4 });

      const fields = await admin.query("queryInstanceOffering", ["name=small"], {
        fields: "uuid,name",
      });
      expect(fields.inventories).toEqual([{ uuid: offerings[0]!.uuid, name: "small" }]);

      const one = await admin.call<{ inventories: Inventory[] }>("queryInstanceOffering", {
        path: { uuid: offerings[1]!.uuid },
      });
      expect(one.inventories.map((offering) => offering.name)).toEqual(["medium"]);
    });

    it("reads count flags in any case", async () => {
      expect(await admin.query("queryInstanceOffering", [], { count: "TRUE" })).toEqual({
        total: 5,
      });
      const page = await admin.query("queryInstanceOffering", [], {
        replyWithCount: "True",
        limit: 1,
      });
      expect(page.total).toBe(5);
      expect(page.inventories).toHaveLength(1);

      await expectApiError(
        admin.query("queryInstanceOffering", [], { count: "yes" }),
        "SYS.1007",
        /invalid count 'yes': expected true or false/,
      );
    });

    it("sorts by sortBy and sortDirection", async () => {
      for (const sortDirection of ["desc", "DESC"]) {
        const reply = await admin.query<Inventory>("queryInstanceOffering", [], {
          sortBy: "cpuNum",
          sortDirection,
          limit: 2,
        });
        expect(reply.inventories.map((offering) => offering.name)).toEqual(["tiny_1", "xlarge"]);
      }

      await expectApiError(
        admin.query("queryInstanceOffering", [], { sortBy: "cpuNum", sortDirection: "down" }),
        "SYS.1007",
        /invalid sortDirection 'down': expected asc or desc/,
      );
    });

    it("crosses declared relations with dotted fields", async () => {
      const zone = (
        await admin.call<{ inventory: Inventory }>("createZone", {
          params: { name: "dotted-zone" },
        })
      ).inventory;
      await admin.call("createCluster", {
        params: { zoneUuid: zone.uuid, name: "dotted-cluster", hypervisorType: "Simulator" },
      });
      const clusters = await admin.query<Inventory>("queryCluster", ["zone.name=dotted-zone"]);
      expect(clusters.inventories.map((cluster) => cluster.name)).toEqual(["dotted-cluster"]);
      const zones = await admin.query<Inventory>("queryZone", ["cluster.hypervisorType=Simulator"]);
      expect(zones.inventories.map((found) => found.name)).toEqual(["dotted-zone"]);
    });

    it("limits relations crossed by one field", async () => {
      const path = (pairs: number) => `${Array(pairs).fill("zone.cluster").join(".")}.name=x`;

      const deepest = await admin.query<Inventory>("queryCluster", [path(5)]);
      expect(deepest.inventories).toEqual([]);

      for (const pairs of [6, 20, 100]) {
        await expectApiError(
          admin.query("queryCluster", [path(pairs)]),
          "SYS.1007",
          new RegExp(`crosses ${pairs * 2} relations; at most 10 are supported`),
        );
      }
    });

    it("tags a zone and queries by tag", async () => {
      const zone = (
        await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "tagged" } })
      ).inventory;
      const userTag = await admin.call<{ inventory: Inventory }>("createUserTag", {
        params: { resourceType: "ZoneVO", resourceUuid: zone.uuid, tag: "team-blue" },
      });
      expect(userTag.inventory.tag).toBe("team-blue");
      await admin.call("createSystemTag", {
        params: { resourceType: "ZoneVO", resourceUuid: zone.uuid, tag: "site::lab" },
      });

      const byUserTag = await admin.query<Inventory>("queryZone", ["__userTag__=team-blue"]);
      expect(byUserTag.inventories.map((found) => found.uuid)).toEqual([zone.uuid]);
      const bySystemTag = await admin.query<Inventory>("queryZone", ["__systemTag__~=site::%"]);
      expect(bySystemTag.inventories.map((found) => found.uuid)).toEqual([zone.uuid]);

      await t.client().logInByAccount("admin", "password");
    });

    it("treats SQL-looking values as plain values", async () => {
      expect(await names(["name=small' or '1'='1"])).toEqual([]);
      expect(await names(["name=small; drop table instanceOfferings; --"])).toEqual([]);
      expect(await names(['name~=%" or 1=1 --'])).toEqual([]);
      expect((await admin.query("queryInstanceOffering", [], { count: true })).total).toBe(5);
    });

    it("rejects unknown fields, operators and bad numbers with 400", async () => {
      await expectApiError(
        admin.query("queryInstanceOffering", ["colour=red"]),
        "SYS.1007",
        /unknown query field 'colour'/,
      );
      await expectApiError(
        admin.query("queryInstanceOffering", ["zone.name=x"]),
        "SYS.1007",
        /unknown query field 'zone.name'/,
      );
      await expectApiError(
        admin.query("queryInstanceOffering", ["cpuNum"]),
        "SYS.1007",
        /invalid query condition/,
      );
      await expectApiError(
        admin.query("queryInstanceOffering", ["cpuNum>two"]),
        "SYS.1007",
        /expected a number/,
      );
      await expectApiError(
        admin.query("queryInstanceOffering", ["createDate>notadate"]),
        "SYS.1007",
        /ISO 8601 date/,
      );
      await expectApiError(
        admin.query("queryInstanceOffering", [], { sort: "-nothing" }),
        "SYS.1007",
        /sort field/,
      );
      await expectApiError(
        admin.query("queryInstanceOffering", [], { limit: -1 }),
        "SYS.1007",
        /limit/,
      );
      await expectApiError(
        admin.query("queryInstanceOffering", [], { fields: "uuid,secret" }),
        "SYS.1007",
        /unknown field 'secret'/,
      );
    });

    it("rejects inherited property names as fields", async () => {
      for (const name of ["constructor", "toString", "hasOwnProperty"]) {
        await expectApiError(
          admin.query("queryInstanceOffering", [`${name}=x`]),
          "SYS.1007",
          new RegExp(`unknown query field '${name}'`),
        );
        await expectApiError(
          admin.query("queryInstanceOffering", [`${name}.name=x`]),
          "SYS.1007",
          new RegExp(`unknown query field '${name}.name'`),
        );
        await expectApiError(
          admin.query("queryInstanceOffering", [], { sort: `+${name}` }),
          "SYS.1007",
          /unknown sort field/,
        );
        await expectApiError(
          admin.query("queryInstanceOffering", [], { fields: `name,${name}` }),
          "SYS.1007",
          new RegExp(`unknown field '${name}'`),
        );
      }

      await expectApiError(
        admin.query("queryInstanceOffering", [], { sortBy: "__proto__" }),
        "SYS.1007",
        /unknown sort field '__proto__'/,
      );
      await expectApiError(
        admin.query("queryInstanceOffering", [], { fields: "name,__proto__" }),
        "SYS.1007",
        /unknown field '__proto__'/,
      );
    });
  });

  describe("bad input", () => {
    const post = (path: string, body: string, contentType = "application/json") =>
      raw(t.server, "POST", path, {
        body,
        headers: { "content-type": contentType, authorization: `OAuth ${admin.session}` },
      });

    it("rejects malformed JSON with 400", async () => {
      const response = await post("/zones", '{"params": {"name": ');
      expect(response.status).toBe(400);
      expect((response.json.error as { code: string }).code).toBe("SYS.1007");
    });

    it("rejects unknown and mistyped fields naming the path", async () => {
      const unknown = await post(
        "/zones",
        JSON.stringify({ params: { name: "z", colour: "red" } }),
      );
      expect(unknown.status).toBe(400);
      expect(JSON.stringify(unknown.json)).toContain("params.colour");

      const mistyped = await post(
        "/instance-offerings",
        JSON.stringify({ params: { name: "o", cpuNum: "four", memorySize: 1 } }),
      );
      expect(mistyped.status).toBe(400);
      expect(JSON.stringify(mistyped.json)).toContain("params.cpuNum");

      const control = await post("/zones", JSON.stringify({ params: { name: "bad\u0007name" } }));
      expect(control.status).toBe(400);
      expect(JSON.stringify(control.json)).toContain("params.name");

      const long = await post("/zones", JSON.stringify({ params: { name: "x".repeat(256) } }));
      expect(long.status).toBe(400);

      const topLevel = await post("/zones", JSON.stringify({ params: { name: "z" }, extra: 1 }));
      expect(topLevel.status).toBe(400);
      expect(JSON.stringify(topLevel.json)).toContain("extra");

      const badTag = await post(
        "/zones",
        JSON.stringify({ params: { name: "z" }, systemTags: ["no-separator"] }),
      );
      expect(badTag.status).toBe(202);
      const job = await admin
        .waitForJob(String(badTag.json.location))
        .catch((error: ApiRequestError) => error);
      expect((job as ApiRequestError).details).toMatch(/invalid system tag/);
    });

    it("rejects deeply nested JSON with 400", async () => {
      for (const depth of [100, 10_000, 100_000]) {
        const objects = `{"params": {"name": ${'{"a": '.repeat(depth)}1${"}".repeat(depth)}}}`;
        const arrays = `{"params": {"name": ${"[".repeat(depth)}1${"]".repeat(depth)}}}`;

        for (const body of [objects, arrays]) {
          const response = await post("/zones", body);
          expect(response.status, `depth ${depth}`).toBe(400);
          expect(JSON.stringify(response.json), `depth ${depth}`).toContain(
            "nests objects and arrays more than 64 deep",
          );
        }
      }
    });

    it("rejects params that are not an object", async () => {
      for (const params of ['"abc"', "[1]", "1", "true"]) {
        const response = await post("/zones", `{"params": ${params}}`);
        expect(response.status, params).toBe(400);
        expect(JSON.stringify(response.json), params).toContain(
          "invalid params: expected a JSON object",
        );
      }

      const zone = (
        await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "shape" } })
      ).inventory;
      const action = await raw(t.server, "PUT", `/zones/${zone.uuid}/actions`, {
        body: JSON.stringify({ updateZone: "renamed" }),
        headers: { "content-type": "application/json", authorization: `OAuth ${admin.session}` },
      });
      expect(action.status).toBe(400);
      expect(JSON.stringify(action.json)).toContain("invalid updateZone: expected a JSON object");
    });

    it("answers 413 for a 2 MiB body and changes nothing", async () => {
      const before = (await admin.query("queryZone", [], { count: true })).total;
      const response = await post(
        "/zones",
        JSON.stringify({ params: { name: "big", description: "x".repeat(2 * 1024 * 1024) } }),
      );
      expect(response.status).toBe(413);
      expect((response.json.error as { code: string }).code).toBe("SYS.1007");
      expect((await admin.query("queryZone", [], { count: true })).total).toBe(before);
    });

    it("rejects HTTP parse errors with ZStack bodies", async () => {
      const long = await raw(t.server, "GET", `/zones?q=name=${"a".repeat(20_000)}`, {
        headers: { authorization: `OAuth ${admin.session}` },
      });
      expect(long.status).toBe(431);
      expect((long.json.error as { code: string }).code).toBe("SYS.1007");
      expect((long.json.error as { details: string }).details).toMatch(/larger than the limit/);

      const { hostname, port } = new URL(t.server.url);
      const text = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), hostname, () => {
          socket.write("GET /zstack/v1/zones HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n");
        });
        let received = "";
        socket.on("data", (chunk) => {
          received += chunk;
        });
        socket.on("close", () => resolve(received));
        socket.on("error", reject);
      });
      expect(text).toMatch(/^HTTP\/1\.1 400 /);
      expect(text).toContain('"code":"SYS.1007"');
      expect(text).toContain("malformed HTTP request");
    });

    it("answers 404 for unknown routes and 405 for wrong methods", async () => {
      const missing = await raw(t.server, "GET", "/no-such-thing");
      expect(missing.status).toBe(404);
      expect((missing.json.error as { code: string }).code).toBe("SYS.1003");

      const wrong = await raw(t.server, "PATCH", "/zones");
      expect(wrong.status).toBe(405);
      expect(wrong.headers.get("allow")).toBe("GET, POST");

      const expired = await raw(t.server, "GET", `/api-jobs/${"e".repeat(32)}`);
      expect(expired.status).toBe(404);
    });

    it("never answers 500 to junk", async () => {
      const bodies = [
        "[]",
        '"text"',
        "null",
        "{}",
        '{"params": []}',
        '{"params": null}',
        '{"params": {"name": {"$gt": ""}}}',
      ];

      for (const body of bodies) {
        const response = await post("/zones", body);
        expect(response.status, body).toBeLessThan(500);
      }

      const text = await post("/zones", "name=z", "text/plain");
      expect(text.status).toBe(415);
    });
  });

  describe("tenancy and quotas", () => {
    let tenant: TstackClient;
    let other: TstackClient;

    beforeAll(async () => {
      for (const name of ["tenant-a", "tenant-b"]) {
        await admin.call("createAccount", { params: { name, password: sha512Hex(`${name}-pw`) } });
      }

      tenant = t.client();
      await tenant.logInByAccount("tenant-a", "tenant-a-pw");
      other = t.client();
      await other.logInByAccount("tenant-b", "tenant-b-pw");
    });

    it("denies infrastructure APIs to normal accounts with ID.1002", async () => {
      const error = await expectApiError(
        tenant.call("createZone", { params: { name: "mine" } }),
        "ID.1002",
      );
      expect(error.status).toBe(403);
      await expectApiError(tenant.query("queryZone"), "ID.1002");
      await expectApiError(tenant.call("queryZone", { path: { uuid: "0".repeat(32) } }), "ID.1002");
      await expectApiError(
        tenant.call("updateGlobalConfig", {
          path: { category: "identity", name: "session.timeout" },
          params: { value: "60" },
        }),
        "ID.1002",
      );
    });

    it("hides and protects another account's resources", async () => {
      const hook = (
        await tenant.call<{ inventory: Inventory }>("createWebHook", {
          params: { name: "mine", url: "http://127.0.0.1:9/x", type: "CanonicalEvent" },
        })
      ).inventory;
      expect((await tenant.query("queryWebHook")).inventories.map((found) => found.uuid)).toEqual([
        hook.uuid,
      ]);
      expect((await other.query("queryWebHook")).inventories).toEqual([]);
      expect(
        (
          await tenant.call<{ inventories: Inventory[] }>("queryWebHook", {
            path: { uuid: hook.uuid },
          })
        ).inventories,
      ).toEqual([hook]);
      expect(
        (
          await other.call<{ inventories: unknown[] }>("queryWebHook", {
            path: { uuid: hook.uuid },
          })
        ).inventories,
      ).toEqual([]);
      await expectApiError(other.call("deleteWebHook", { path: { uuid: hook.uuid } }), "ID.1002");
      await expectApiError(
        other.call("updateWebHook", { path: { uuid: hook.uuid }, params: { name: "stolen" } }),
        "ID.1002",
      );
      await expectApiError(
        other.call("createUserTag", {
          params: { resourceType: "WebHook", resourceUuid: hook.uuid, tag: "x" },
        }),
        "ID.1002",
      );
      expect((await admin.query("queryWebHook", [`uuid=${hook.uuid}`])).inventories).toHaveLength(
        1,
      );
      await tenant.call("deleteWebHook", { path: { uuid: hook.uuid } });
    });

    it("shows normal accounts only their own account and sub-users", async () => {
      const accounts = await tenant.query<Inventory>("queryAccount");
      expect(accounts.inventories.map((account) => account.name)).toEqual(["tenant-a"]);
      await tenant.call("createUser", {
        params: { name: "alice", password: sha512Hex("alice-pw") },
      });
      expect((await other.query("queryUser")).inventories).toEqual([]);

      const alice = t.client();
      await alice.logInByUser("tenant-a", "alice", "alice-pw");
      expect(
        (await alice.query<Inventory>("queryUser")).inventories.map((user) => user.name),
      ).toEqual(["alice"]);
    });

    it("ends a deleted user's sessions at once", async () => {
      const user = (
        await tenant.call<{ inventory: Inventory }>("createUser", {
          params: { name: "leaving", password: sha512Hex("leaving-pw") },
        })
      ).inventory;
      const leaving = t.client();
      await leaving.logInByUser("tenant-a", "leaving", "leaving-pw");
      await leaving.query("queryUser");

      await tenant.call("deleteUser", { path: { uuid: user.uuid } });

      await expectApiError(leaving.query("queryUser"), "ID.1001", /invalid or expired/);
    });

    it("caps open sessions per account, users included", async () => {
      await admin.call("createAccount", {
        params: { name: "capped", password: sha512Hex("capped-pw") },
      });
      const owner = t.client();
      await owner.logInByAccount("capped", "capped-pw");
      await owner.call("createUser", { params: { name: "bob", password: sha512Hex("bob-pw") } });
      await t.client().logInByUser("capped", "bob", "bob-pw");
      const cap = { path: { category: "identity", name: "session.maxConcurrent" } };
      await admin.call("updateGlobalConfig", { ...cap, params: { value: "2" } });

      try {
        await expectApiError(
          t.client().logInByUser("capped", "bob", "bob-pw"),
          "ID.1000",
          /already has 2 open sessions/,
        );
        await expectApiError(t.client().logInByAccount("capped", "capped-pw"), "ID.1000");
        await t.client().logInByAccount("tenant-b", "tenant-b-pw");
      } finally {
        await admin.call("updateGlobalConfig", { ...cap, params: { value: "500" } });
      }
    });

    it("answers ID.1003 when a quota is exceeded", async () => {
      const account = (await tenant.query<Inventory>("queryAccount")).inventories[0]!;
      await admin.call("updateQuota", {
        params: { identityUuid: account.uuid, name: "webhook.num", value: 1 },
      });
      const quotas = await tenant.query<{ name: string; value: number }>("queryQuota", [
        "name=webhook.num",
      ]);
      expect(quotas.inventories[0]?.value).toBe(1);

      await tenant.call("createWebHook", {
        params: { name: "one", url: "http://127.0.0.1:9/x", type: "CanonicalEvent" },
      });
      await expectApiError(
        tenant.call("createWebHook", {
          params: { name: "two", url: "http://127.0.0.1:9/x", type: "CanonicalEvent" },
        }),
        "ID.1003",
        /webhook.num/,
      );
      expect((await tenant.query("queryWebHook")).inventories).toHaveLength(1);
    });

    it("answers ID.1003 for VMs over the vm.num quota", async () => {
      const account = (await tenant.query<Inventory>("queryAccount")).inventories[0]!;
      await admin.call("updateQuota", {
        params: { identityUuid: account.uuid, name: "vm.num", value: 0 },
      });
      const params = {
        name: "over",
        imageUuid: "a".repeat(32),
        cpuNum: 1,
        memorySize: 128 * 1024 * 1024,
      };
      await expectApiError(
        tenant.call("createVmInstance", { params }),
        "ID.1003",
        /quota vm.num .* 0 used \+ 1 requested > 0 allowed/,
      );
      expect((await tenant.query("queryVmInstance")).inventories).toEqual([]);
    });
  });

  describe("webhooks, events and audit", () => {
    it("POSTs a job result to X-Web-Hook", async () => {
      const receiver = await startReceiver();

      try {
        const jobUuid = "f".repeat(32);
        await admin.call("createZone", {
          params: { name: "hooked" },
          headers: { "X-Web-Hook": receiver.url, "X-Job-UUID": jobUuid },
        });
        const delivery = await receiver.waitFor((entry) => entry.headers["x-job-uuid"] === jobUuid);
        expect(delivery.headers["x-job-success"]).toBe("true");
        expect((JSON.parse(delivery.body) as { inventory: Inventory }).inventory.name).toBe(
          "hooked",
        );
      } finally {
        await receiver.close();
      }
    });

    it("delivers canonical events to subscriptions with an HMAC signature", async () => {
      const receiver = await startReceiver();

      try {
        const secret = "0123456789abcdef-secret";
        const hook = (
          await admin.call<{ inventory: Inventory }>("createWebHook", {
            params: {
              name: "zones",
              url: receiver.url,
              type: "CanonicalEvent",
              opaque: "/zone/state/*",
              secret,
            },
          })
        ).inventory;
        expect(hook).not.toHaveProperty("secret");
        const zone = (
          await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "watched" } })
        ).inventory;
        await admin.call("changeZoneState", {
          path: { uuid: zone.uuid },
          params: { stateEvent: "disable" },
        });

        const delivery = await receiver.waitFor((entry) => entry.body.includes(zone.uuid));
        const { createHmac } = await import("node:crypto");
        expect(delivery.headers["x-tstack-signature"]).toBe(
          `sha256=${createHmac("sha256", secret).update(delivery.body).digest("hex")}`,
        );
        const event = JSON.parse(delivery.body) as { path: string; content: { newState: string } };
        expect(event.path).toBe("/zone/state/change");
        expect(event.content.newState).toBe("Disabled");
        expect(receiver.received.every((entry) => !entry.body.includes('"/zone/create"'))).toBe(
          true,
        );
        await admin.call("deleteWebHook", { path: { uuid: hook.uuid } });
      } finally {
        await receiver.close();
      }
    });

    it("rejects an invalid Last-Event-ID", async () => {
      for (const [header, query] of [
        ["abc", ""],
        ["1.5", ""],
        ["", "?lastEventId=-1"],
        ["", "?lastEventId=1&lastEventId=2"],
      ]) {
        const response = await fetch(`${t.server.url}/zstack/v1/events${query}`, {
          headers: {
            authorization: `OAuth ${admin.session}`,
            ...(header ? { "last-event-id": header } : {}),
          },
        });
        const body = await response.text();
        expect(response.status, header || query).toBe(400);
        expect(body, header || query).toContain("invalid Last-Event-ID");
      }
    });

    it("streams events and resumes after Last-Event-ID", async () => {
      const zone = (
        await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "streamed" } })
      ).inventory;
      await admin.call("changeZoneState", {
        path: { uuid: zone.uuid },
        params: { stateEvent: "disable" },
      });
      await t.server.core.relay.settle();
      const rows = await t.server.core.kysely
        .selectFrom("events")
        .select(["id", "path"])
        .where("resourceUuid", "=", zone.uuid)
        .orderBy("id")
        .execute();
      expect(rows.map((row) => row.path)).toEqual(["/zone/create", "/zone/state/change"]);

      const controller = new AbortController();
      const response = await fetch(`${t.server.url}/zstack/v1/events`, {
        headers: { authorization: `OAuth ${admin.session}`, "last-event-id": String(rows[0]!.id) },
        signal: controller.signal,
      });
      expect(response.headers.get("content-type")).toContain("text/event-stream");
      const reader = response.body!.getReader();
      let text = "";

      while (!text.includes(`id: ${rows[1]!.id}\n`)) {
        const chunk = await reader.read();
        text += new TextDecoder().decode(chunk.value);
      }

      controller.abort();
      expect(text).not.toContain(`id: ${rows[0]!.id}\n`);
      expect(text).toContain("event: /zone/state/change");
    });

    it("replays more than one page of events", async () => {
      const { core } = t.server;
      const newest = await core.kysely
        .selectFrom("events")
        .select((eb) => eb.fn.max("id").as("id"))
        .executeTakeFirst();
      const lastId = Number(newest?.id ?? 0);
      const stamp = new Date().toISOString();

      for (let chunk = 0; chunk < 12; chunk++) {
        const rows = Array.from({ length: 1000 }, () => ({
          path: "/test/replay",
          resourceUuid: null,
          accountUuid: null,
          content: "{}",
          createDate: stamp,
        }));
        await core.kysely.insertInto("events").values(rows).execute();
      }

      // Once the relay has published the rows, only a replay can deliver them.
      await core.relay.settle();
      const inserted = await core.kysely
        .selectFrom("events")
        .select((eb) => eb.fn.max("id").as("id"))
        .executeTakeFirst();
      const controller = new AbortController();
      const response = await fetch(`${t.server.url}/zstack/v1/events`, {
        headers: { authorization: `OAuth ${admin.session}`, "last-event-id": String(lastId) },
        signal: controller.signal,
      });
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      const deadline = Date.now() + 30_000;
      let text = "";

      while (!text.includes(`id: ${inserted?.id}\n`) && Date.now() < deadline) {
        const timeout = new Promise<undefined>((resolve) => setTimeout(resolve, 1000));
        const chunk = await Promise.race([reader.read(), timeout]);
        text += chunk?.value ? decoder.decode(chunk.value) : "";
      }

      controller.abort();
      expect(text).toContain(`id: ${inserted?.id}\n`);
      expect(text.split("event: /test/replay\n").length - 1).toBe(12_000);
    });

    it("records one audit entry per write API", async () => {
      const zone = (
        await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "audited" } })
      ).inventory;
      const audits = await admin.query<{
        apiName: string;
        success: boolean;
        resourceUuid: string | null;
      }>("queryAudit", ["apiName=createZone", "success=true"], { sort: "-createDate", limit: 50 });
      expect(audits.inventories.length).toBeGreaterThan(0);
      await admin.call("deleteZone", { path: { uuid: zone.uuid } });
      const deletes = await admin.query<{ resourceUuid: string; success: boolean }>("queryAudit", [
        `resourceUuid=${zone.uuid}`,
        "apiName=deleteZone",
      ]);
      expect(deletes.inventories.map((audit) => audit.success)).toEqual([true]);
    });
  });

  describe("global configuration", () => {
    it("validates, applies live and resets", async () => {
      await expectApiError(
        admin.call("updateGlobalConfig", {
          path: { category: "identity", name: "session.timeout" },
          params: { value: "ten" },
        }),
        "SYS.1007",
        /expected an integer/,
      );
      await expectApiError(
        admin.call("updateGlobalConfig", {
          path: { category: "identity", name: "session.timeout" },
          params: { value: "5" },
        }),
        "SYS.1007",
        /from 60/,
      );
      await expectApiError(
        admin.call("updateGlobalConfig", {
          path: { category: "nope", name: "nothing" },
          params: { value: "1" },
        }),
        "SYS.1007",
        /does not exist/,
      );

      const updated = await admin.call<{ inventory: { value: string; defaultValue: string } }>(
        "updateGlobalConfig",
        { path: { category: "identity", name: "session.timeout" }, params: { value: "600" } },
      );
      expect(updated.inventory).toMatchObject({ value: "600", defaultValue: "7200" });
      expect(t.server.core.config.number("identity", "session.timeout")).toBe(600);

      const client = t.client();
      const session = await client.logInByAccount("admin", "password");
      expect(
        Date.parse((session as unknown as { expiredDate: string }).expiredDate) - Date.now(),
      ).toBeLessThan(700_000);

      await admin.call("resetGlobalConfig", { params: {} });
      const listed = await admin.query<{ value: string }>("queryGlobalConfig", [
        "category=identity",
        "name=session.timeout",
      ]);
      expect(listed.inventories[0]?.value).toBe("7200");
    });

    it("keeps per-resource overrides", async () => {
      const zone = (
        await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "configured" } })
      ).inventory;
      await admin.call("updateResourceConfig", {
        path: { category: "identity", name: "session.timeout", resourceUuid: zone.uuid },
        params: { value: "900" },
      });
      expect(await t.server.core.config.forResource("identity", "session.timeout", zone.uuid)).toBe(
        "900",
      );
      expect(
        await t.server.core.config.forResource("identity", "session.timeout", "0".repeat(32)),
      ).toBe("7200");
    });

    it("rejects resetting an unknown override", async () => {
      await expectApiError(
        admin.call("deleteResourceConfig", {
          path: { category: "identity", name: "session.timout", resourceUuid: "0".repeat(32) },
        }),
        "SYS.1007",
        /identity.session.timout does not exist/,
      );
    });
  });

  describe("documents", () => {
    it("serves the OpenAPI document from the route declarations", async () => {
      const response = await raw(t.server, "GET", "/openapi.json");
      const document = response.json as {
        openapi: string;
        paths: Record<string, Record<string, { operationId: string }>>;
      };
      expect(document.openapi).toBe("3.0.3");
      expect(document.paths["/zstack/v1/zones"]?.post?.operationId).toBe("createZone");
      expect(document.paths["/zstack/v1/api-jobs/{uuid}"]?.get?.operationId).toBe("pollApiJob");
    });

    it("serves readiness and Prometheus metrics", async () => {
      expect((await raw(t.server, "GET", "/management-nodes/ready")).status).toBe(200);
      const metrics = await fetch(`${t.server.url}/metrics`).then((response) => response.text());
      expect(metrics).toContain("tstack_http_requests_total");
      expect(metrics).toContain("tstack_http_request_duration_seconds_bucket");
      expect(metrics).toContain("tstack_api_jobs_running");
    });
  });
});
