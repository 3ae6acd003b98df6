import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { Type } from "@sinclair/typebox";
import { type ApiRoute, Name, Strict } from "@tstack/api";
import type { ParamsOf, RouteNamed } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../server/test/harness.js";

const ROOT = resolve(import.meta.dirname, "../../..");

// A route declared outside packages/api, the way a plugin would, typed the same way.
const createZone = {
  name: "createZone",
  method: "POST",
  path: "/zones",
  kind: "create",
  params: Strict({ name: Name, description: Type.Optional(Type.String()) }),
  summary: "Create a zone",
} as const satisfies ApiRoute;

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer("sqlite");
});

afterAll(async () => {
  await t?.stop();
});

describe("typed api", () => {
  it("types params and replies by name", async () => {
    const created = await t.admin.api.createZone({ params: { name: "typed" } });
    const listed = await t.admin.api.queryZone({ query: { q: `uuid=${created.inventory.uuid}` } });

    expect(created.inventory.name).toBe("typed");
    expect(listed.inventories.map((zone) => zone.name)).toEqual(["typed"]);
  });

  it("types params of a route object", async () => {
    const params: ParamsOf<typeof createZone> = { name: "invoked" };

    const reply = (await t.admin.invoke(createZone, { params })) as { inventory: { name: string } };

    expect(reply.inventory.name).toBe("invoked");
  });

  it("has methods only for declared APIs", () => {
    expect((t.admin.api as Record<string, unknown>).noSuchApi).toBeUndefined();
    expect("then" in t.admin.api).toBe(false);
  });

  it("rejects bad params at compile time", () => {
    // Checked by the type check below; vitest only strips the types.
    // @ts-expect-error name must be a string
    const wrongType: ParamsOf<RouteNamed<"createZone">> = { name: 1 };
    // @ts-expect-error unknown property
    const unknownProperty: ParamsOf<RouteNamed<"createZone">> = { name: "x", size: 1 };
    // @ts-expect-error imageUuid is required
    const missingImage: ParamsOf<RouteNamed<"createVmInstance">> = { name: "vm" };

    expect([wrongType, unknownProperty, missingImage]).toHaveLength(3);
  });

  it("passes the SDK's type check, tests included", async () => {
    const tsc = resolve(ROOT, "node_modules/.bin/tsc");

    const { stdout } = await promisify(execFile)(tsc, ["-p", "packages/sdk/tsconfig.test.json"], {
      cwd: ROOT,
    }).catch((error: { stdout: string }) => ({ stdout: error.stdout }));

    expect(stdout).toBe("");
  }, 120_000);
});
