import { describe, expect, it } from "vitest";
import { fragment, identifier, joinFragments, rawSql, renderSql } from "./sql-fragment.js";

describe("renderSql", () => {
  const inner = fragment`${identifier("t1", "name")} = ${"web"}`;
  const statement = fragment`select * from ${identifier("vms")} as t0 where t0.cpu > ${2} and exists (${inner}) and ${joinFragments([fragment`${"a"}`, fragment`${"b"}`], ", ")} ${rawSql("limit 1")}`;

  it("numbers placeholders on PostgreSQL", () => {
    const rendered = renderSql(statement, "postgres");
    expect(rendered.sql).toBe(
      'select * from "vms" as t0 where t0.cpu > $1 and exists ("t1"."name" = $2) and $3, $4 limit 1',
    );
    expect(rendered.parameters).toEqual([2, "web", "a", "b"]);
  });

  it("binds in text order on SQLite", () => {
    const rendered = renderSql(statement, "sqlite");
    expect(rendered.sql).toBe(
      'select * from "vms" as t0 where t0.cpu > ? and exists ("t1"."name" = ?) and ?, ? limit 1',
    );
    expect(rendered.parameters).toEqual([2, "web", "a", "b"]);
  });

  it("escapes quotes in identifiers", () => {
    expect(renderSql(identifier('we"ird'), "sqlite").sql).toBe('"we""ird"');
  });
});
