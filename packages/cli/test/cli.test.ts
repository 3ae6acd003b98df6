import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../../server/test/harness.js";
import { requireBuild, tstack } from "./run.js";

interface Inventory {
  uuid: string;
  name: string;
  state: string;
  zoneUuid?: string;
}

let t: TestServer;
let dir: string;
let config: string;

const run = (...args: string[]) => tstack(config, args);

async function login(file = config) {
  const result = await tstack(file, ["login", "--endpoint", t.server.url, "--account", "admin"], {
    TSTACK_PASSWORD: ADMIN_PASSWORD,
  });
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
}

async function zoneNamed(name: string) {
  return (await t.admin.query<Inventory>("queryZone", [`name=${name}`])).inventories;
}

beforeAll(async () => {
  requireBuild();
  t = await startTestServer("sqlite");
  dir = mkdtempSync(join(tmpdir(), "tqc-cli-"));
  config = join(dir, "config.json");
  await login();
});

afterAll(async () => {
  await t?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("login and logout", () => {
  it("keeps the session in a 0600 config file", () => {
    const saved = JSON.parse(readFileSync(config, "utf8"));

    expect(saved.endpoint).toBe(t.server.url);
    expect(saved.session).toMatch(/^[0-9a-f]{32}$/);
    expect(saved.accountName).toBe("admin");
    expect(statSync(config).mode & 0o777).toBe(0o600);
  });

  it("reads the password from stdin when it is not a terminal", async () => {
    const file = join(dir, "stdin.json");
    const result = await tstack(
      file,
      ["login", "--endpoint", t.server.url, "--account", "admin"],
      {},
      `${ADMIN_PASSWORD}\n`,
    );

    expect(result.code).toBe(0);
    expect(result.stdout).toContain("logged in");
  });

  it("logs in as a user of an account", async () => {
    const created = await run("user", "create", "--name", "alice", "--password", "alice-pass");
    expect(created.code).toBe(0);
    const file = join(dir, "user.json");

    const result = await tstack(
      file,
      ["login", "--endpoint", t.server.url, "--account", "admin", "--user", "alice"],
      { TSTACK_PASSWORD: "alice-pass" },
    );

    expect(result.stderr).toBe("");
    expect(JSON.parse(readFileSync(file, "utf8")).userName).toBe("alice");
  });

  it("rejects a wrong password with exit 1 and the code", async () => {
    const result = await tstack(
      join(dir, "wrong.json"),
      ["login", "--endpoint", t.server.url, "--account", "admin"],
      { TSTACK_PASSWORD: "wrong" },
    );

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: ID\.1000 /);
    expect(result.stderr).not.toContain("    at ");
  });

  it("logs out on the server and forgets the session", async () => {
    const file = join(dir, "logout.json");
    await login(file);
    const session = JSON.parse(readFileSync(file, "utf8")).session;

    const result = await tstack(file, ["logout"]);

    expect(result.code).toBe(0);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ endpoint: t.server.url });
    const client = new TstackClient({ endpoint: t.server.url, session });
    expect(await client.validateSession()).toBe(false);
    const after = await tstack(file, ["zone", "list"]);
    expect(after.code).toBe(1);
    expect(after.stderr).toContain("not logged in");
  });

  it("reports an expired session with ID.1001 and a hint", async () => {
    const file = join(dir, "expired.json");
    await login(file);
    const session = JSON.parse(readFileSync(file, "utf8")).session;
    await new TstackClient({ endpoint: t.server.url, session }).logOut();

    const result = await tstack(file, ["zone", "list"]);

    expect(result.code).toBe(1);
    expect(result.stderr).toContain("error: ID.1001 The session is invalid or expired");
    expect(result.stderr).toContain("details: session ");
    expect(result.stderr).toContain("run 'tstack login' again");
  });
});

describe("zone commands", () => {
  it("creates, lists, gets, updates, changes state and deletes", async () => {
    const created = await run("zone", "create", "--name", "cli-zone", "--description", "first");
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^uuid\s+[0-9a-f]{32}$/m);
    const [zone] = await zoneNamed("cli-zone");
    expect(zone?.state).toBe("Enabled");

    const listed = await run("zone", "list", "--query", "name=cli-zone");
    expect(listed.stdout.split("\n")[0]).toMatch(/^UUID\s+NAME\s+STATE\s+TYPE$/);
    expect(listed.stdout).toContain(zone!.uuid);

    const shown = await run("zone", "get", "cli-zone");
    expect(shown.stdout).toMatch(/^description\s+first$/m);

    const updated = await run("zone", "update", "cli-zone", "--description", "second");
    expect(updated.code).toBe(0);
    expect(updated.stdout).toMatch(/^description\s+second$/m);

    const disabled = await run("zone", "change-state", "cli-zone", "--state-event", "disable");
    expect(disabled.code).toBe(0);
    expect((await zoneNamed("cli-zone"))[0]?.state).toBe("Disabled");

    const deleted = await run("zone", "delete", zone!.uuid, "--delete-mode", "Enforcing");
    expect(deleted.code).toBe(0);
    expect(await zoneNamed("cli-zone")).toEqual([]);
  });

  it("prints json and yaml", async () => {
    await run("zone", "create", "--name", "formats");
    const [zone] = await zoneNamed("formats");

    const json = await run("zone", "list", "--query", "name=formats", "-o", "json");
    expect(JSON.parse(json.stdout)).toEqual([expect.objectContaining({ uuid: zone!.uuid })]);

    const yaml = await run("--output", "yaml", "zone", "get", "formats");
    expect(yaml.stdout).toContain(`uuid: ${zone!.uuid}\n`);
    expect(yaml.stdout).toContain("name: formats\n");
    expect(yaml.stdout).toMatch(/^createDate: "\d{4}-/m);

    const yamlList = await run("zone", "list", "--query", "name=formats", "--output", "yaml");
    expect(yamlList.stdout.startsWith(`- uuid: ${zone!.uuid}\n  name: formats\n`)).toBe(true);
  });

  it("applies --limit and --sort", async () => {
    for (const name of ["sort-b", "sort-a", "sort-c"]) {
      await run("zone", "create", "--name", name);
    }

    const result = await run(
      "zone",
      "list",
      "--query",
      "name~=sort-%",
      "--sort",
      "-name",
      "--limit",
      "2",
      "-o",
      "json",
    );

    expect(JSON.parse(result.stdout).map((zone: Inventory) => zone.name)).toEqual([
      "sort-c",
      "sort-b",
    ]);
  });

  it("prints the job location with --no-wait", async () => {
    const result = await run("zone", "create", "--name", "later", "--no-wait");

    expect(result.code).toBe(0);
    const location = result.stdout.trim();
    expect(location).toMatch(/\/zstack\/v1\/api-jobs\/[0-9a-f]{32}$/);
    const done = (await t.admin.waitForJob(location)) as { inventory: Inventory };
    expect(done.inventory.name).toBe("later");

    const json = await run("zone", "create", "--name", "later-json", "--no-wait", "-o", "json");
    expect(JSON.parse(json.stdout)).toEqual({
      location: expect.stringContaining("/api-jobs/"),
      apiTimeout: expect.any(Number),
    });
  });

  it("passes system and user tags", async () => {
    const result = await run(
      "zone",
      "create",
      "--name",
      "tagged",
      "--user-tag",
      "team::blue",
      "--user-tag",
      "tier::gold",
    );
    expect(result.code).toBe(0);
    const [zone] = await zoneNamed("tagged");

    const tags = await run(
      "user-tag",
      "list",
      "--query",
      `resourceUuid=${zone!.uuid}`,
      "-o",
      "json",
    );

    expect(
      JSON.parse(tags.stdout)
        .map((tag: { tag: string }) => tag.tag)
        .sort(),
    ).toEqual(["team::blue", "tier::gold"]);
  });
});

describe("name resolution", () => {
  it("resolves a zone name for cluster create", async () => {
    await run("zone", "create", "--name", "home");
    const [zone] = await zoneNamed("home");

    const result = await run(
      "cluster",
      "create",
      "--zone",
      "home",
      "--name",
      "c1",
      "--hypervisor-type",
      "KVM",
      "-o",
      "json",
    );

    expect(result.stderr).toBe("");
    expect(JSON.parse(result.stdout).zoneUuid).toBe(zone!.uuid);
  });

  it("lists the uuids of an ambiguous name", async () => {
    await run("zone", "create", "--name", "twin");
    await run("zone", "create", "--name", "twin");
    const uuids = (await zoneNamed("twin")).map((zone) => zone.uuid);

    const result = await run("zone", "get", "twin");

    expect(result.code).toBe(1);
    expect(result.stderr).toContain("zone name 'twin' is ambiguous");

    for (const uuid of uuids) {
      expect(result.stderr).toContain(uuid);
    }
  });

  it("reports an unknown name", async () => {
    const result = await run("zone", "change-state", "nowhere", "--state-event", "disable");

    expect(result.code).toBe(1);
    expect(result.stderr).toBe("error: zone 'nowhere' not found: no Zone has that name or uuid\n");
  });

  it("passes path variables that are not uuids", async () => {
    const result = await run(
      "global-config",
      "update",
      "identity",
      "session.timeout",
      "--value",
      "7200",
      "-o",
      "json",
    );

    expect(result.stderr).toBe("");
    expect(JSON.parse(result.stdout)).toMatchObject({ category: "identity", value: "7200" });
  });
});

describe("errors and exit codes", () => {
  it.each([
    [["nonsense"], /unknown command 'nonsense'/],
    [["zone", "frobnicate"], /unknown command 'frobnicate'/],
    [["zone", "create", "--name", "x", "--bogus"], /unknown option '--bogus'/],
    [["zone", "create"], /required option '--name <string>' not specified/],
    [
      ["zone", "change-state", "x", "--state-event", "sideways"],
      /argument .sideways. is invalid. expected one of enable, disable/,
    ],
    [
      ["instance-offering", "create", "--name", "o", "--cpu-num", "two", "--memory-size", "1"],
      /'two' is not an integer/,
    ],
    [["zone", "list", "--limit", "-1"], /is not a non-negative integer/],
    [["zone", "list", "-o", "xml"], /Allowed choices are table, json, yaml/],
    [["zone"], /Usage: tstack zone/],
    [["completion", "fish"], /unsupported shell 'fish'/],
  ])("exits 2 for %j", async (args, message) => {
    const result = await run(...args);

    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it("exits 1 with code, details and no stack for an API error", async () => {
    const result = await run(
      "instance-offering",
      "create",
      "--name",
      "tiny",
      "--cpu-num",
      "1",
      "--memory-size",
      "1",
    );

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: SYS\.1007 One or more API arguments are invalid\n/);
    expect(result.stderr).toMatch(/^details: .*memorySize/m);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("prints help with exit 0", async () => {
    const result = await run("zone", "create", "--help");

    expect(result.code).toBe(0);
    expect(result.stdout).toContain("--name <string>");
    expect(result.stdout).toContain("--no-wait");
  });

  it("reports an unknown VM for the console", async () => {
    const result = await run("vm", "console", "vm1");

    expect(result.code).toBe(1);
    expect(result.stderr).toContain("vm1");
  });
});

describe("other resources", () => {
  it("hashes a password flag and creates a usable account", async () => {
    const created = await run("account", "create", "--name", "tenant", "--password", "t-secret");
    expect(created.code).toBe(0);
    const file = join(dir, "tenant.json");

    const result = await tstack(
      file,
      ["login", "--endpoint", t.server.url, "--account", "tenant"],
      { TSTACK_PASSWORD: "t-secret" },
    );
    expect(result.code).toBe(0);

    const denied = await tstack(file, ["zone", "list"]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain("error: ID.1002 Permission denied");
  });

  it("runs sync APIs and lists api jobs", async () => {
    const version = await run("management-node", "get-version", "-o", "json");
    expect(JSON.parse(version.stdout)).toHaveProperty("version");

    const jobs = await run("api-job", "list", "--limit", "1", "-o", "json");
    expect(JSON.parse(jobs.stdout)).toHaveLength(1);
  });
});

describe("events", () => {
  it("follows the event stream from an event id", async () => {
    await run("zone", "create", "--name", "announced");
    const [zone] = await zoneNamed("announced");
    await t.server.core.relay.settle();
    const row = await t.server.core.kysely
      .selectFrom("events")
      .select("id")
      .where("resourceUuid", "=", zone!.uuid)
      .executeTakeFirstOrThrow();
    const from = String(Number(row.id) - 1);

    const json = await run("events", "--last-event-id", from, "--count", "1", "-o", "json");
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      id: Number(row.id),
      path: "/zone/create",
      resourceUuid: zone!.uuid,
    });

    const table = await run("events", "--last-event-id", from, "--count", "1");
    expect(table.stdout).toMatch(new RegExp(`^${row.id}  \\S+  /zone/create  ${zone!.uuid}\n$`));
  });
});

describe("completion", () => {
  it("completes resources, verbs and flags in bash", async () => {
    const script = await run("completion", "bash");
    expect(script.code).toBe(0);
    const file = join(dir, "completion.bash");
    writeFileSync(file, script.stdout);

    const complete = (...words: string[]) =>
      execFileSync("bash", [
        "-c",
        `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _tstack; echo "\${COMPREPLY[*]}"`,
        "bash",
        file,
        "tstack",
        ...words,
      ])
        .toString()
        .trim();

    expect(complete("zo")).toBe("zone");
    expect(complete("zone", "ch")).toBe("change-state");
    expect(complete("-o", "json", "cluster", "create", "--zo")).toBe("--zone");
    expect(complete("instance-offering", "create", "--cpu-num", "1", "--mem")).toBe(
      "--memory-size",
    );
  });

  it("prints a zsh script", async () => {
    const script = await run("completion", "zsh");

    expect(script.code).toBe(0);
    expect(script.stdout.startsWith("#compdef tstack\n")).toBe(true);
    expect(script.stdout).toContain('"zone") choices="list get ');
    expect(script.stdout).toContain("compdef _tstack tstack");
  });
});
