import { Type } from "@sinclair/typebox";
import { type ApiRoute, Name, Strict } from "@tstack/api";
import type { ParamsOf } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../server/test/harness.js";

// The shape packages/api would give createZone if it declared routes with `as const satisfies`.
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

describe("typed invoke", () => {
  it("types params by the route schema", async () => {
    const params: ParamsOf<typeof createZone> = { name: "typed" };

    const reply = (await t.admin.invoke(createZone, { params })) as { inventory: { name: string } };

    expect(reply.inventory.name).toBe("typed");
  });

  it("rejects params of the wrong type at compile time", () => {
    // Checked by `npx tsc -p packages/sdk/tsconfig.test.json`; vitest only strips the types.
    // @ts-expect-error name must be a string
    const wrongType: ParamsOf<typeof createZone> = { name: 1 };
    // @ts-expect-error unknown property
    const unknownProperty: ParamsOf<typeof createZone> = { name: "x", size: 1 };

    expect([wrongType, unknownProperty]).toHaveLength(2);
  });
});
