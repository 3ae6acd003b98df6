import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dialects, raw, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

describe.each(dialects)("read path on %s", (dialect) => {
  let t: TestServer;
  let zone: Inventory;
  let authorization: Record<string, string>;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    const created = await t.admin.call<{ inventory: Inventory }>("createZone", {
      params: { name: "read-path" },
    });
    zone = created.inventory;
    authorization = { authorization: `OAuth ${t.admin.session}` };
  });

  afterAll(async () => {
    await t?.stop();
  });

  async function get(path: string) {
    return raw(t.server, "GET", path, { headers: authorization });
  }

  it("gets one resource by uuid", async () => {
    const response = await get(`/zones/${zone.uuid}`);
    expect(response.status).toBe(200);
    expect(response.json.inventories).toEqual([zone]);
  });

  it("answers an unknown uuid with no inventories", async () => {
    const response = await get(`/zones/${"f".repeat(32)}`);
    expect(response.status).toBe(200);
    expect(response.json.inventories).toEqual([]);
  });

  it("projects fields on a lookup by uuid", async () => {
    const projected = await get(`/zones/${zone.uuid}?fields=uuid,name`);
    expect(projected.status).toBe(200);
    expect(projected.json.inventories).toEqual([{ uuid: zone.uuid, name: "read-path" }]);

    const unknown = await get(`/zones/${zone.uuid}?fields=color`);
    expect(unknown.status).toBe(400);
    expect(JSON.stringify(unknown.json)).toMatch(/unknown field 'color'/);
  });

  it("pages a lookup by uuid when asked", async () => {
    const skipped = await get(`/zones/${zone.uuid}?start=1`);
    expect(skipped.json.inventories).toEqual([]);

    const limited = await get(`/zones/${zone.uuid}?limit=0`);
    expect(limited.json.inventories).toEqual([]);

    const counted = await get(`/zones/${zone.uuid}?count=true`);
    expect(counted.json).toEqual({ total: 1 });
  });

  it("validates sort and paging on a lookup by uuid", async () => {
    const badSort = await get(`/zones/${zone.uuid}?sort=-color`);
    expect(badSort.status).toBe(400);
    expect(JSON.stringify(badSort.json)).toMatch(/unknown sort field 'color'/);

    const badLimit = await get(`/zones/${zone.uuid}?limit=-1`);
    expect(badLimit.status).toBe(400);
    expect(JSON.stringify(badLimit.json)).toMatch(/invalid limit '-1'/);
  });

  it("binds values in order across nested conditions", async () => {
    const other = await t.admin.call<{ inventory: Inventory }>("createZone", {
      params: { name: "read-path-2", description: "second" },
      userTags: ["read-path-tag"],
    });
    const query = [
      "q=name?=read-path,read-path-2",
      "q=__userTag__=read-path-tag",
      "q=description~=sec%25",
      "q=state!=Disabled",
      "sort=-name",
    ].join("&");

    const response = await get(`/zones?${query}&replyWithCount=true`);
    expect(response.status).toBe(200);
    expect(response.json.total).toBe(1);
    expect((response.json.inventories as Inventory[]).map((row) => row.uuid)).toEqual([
      other.inventory.uuid,
    ]);
  });

  it("answers a query while a write transaction is open", async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let opened!: () => void;
    const open = new Promise<void>((resolve) => {
      opened = resolve;
    });
    const uncommitted = "e".repeat(32);
    const stamp = new Date().toISOString();
    const { accountUuid } = await t.server.core.kysely
      .selectFrom("zones")
      .select("accountUuid")
      .where("uuid", "=", zone.uuid)
      .executeTakeFirstOrThrow();

    const transaction = t.server.core.kysely.transaction().execute(async (tx) => {
      await tx
        .updateTable("zones")
        .set({ name: "uncommitted" })
        .where("uuid", "=", zone.uuid)
        .execute();
      await tx
        .insertInto("zones")
        .values({
          uuid: uncommitted,
          name: "uncommitted",
          description: null,
          state: "Enabled",
          type: "zstack",
          accountUuid,
          createDate: stamp,
          lastOpDate: stamp,
          version: 0,
        })
        .execute();
      opened();
      await released;
      throw new Error("roll back the test transaction");
    });

    try {
      await open;
      const byUuid = await get(`/zones/${zone.uuid}`);
      expect(byUuid.status).toBe(200);
      expect((byUuid.json.inventories as Inventory[])[0]?.name).toBe("read-path");

      const unseen = await get(`/zones/${uncommitted}`);
      expect(unseen.json.inventories).toEqual([]);
    } finally {
      release();
      await transaction.catch(() => undefined);
    }
  });
});
