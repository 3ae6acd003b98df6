import { ApiError, parseCondition, type QueryCondition } from "@tstack/api";
import { type Kysely, type RawBuilder, sql } from "kysely";
import type { DialectName } from "../db/connect.js";
import type { Database } from "../db/schema.js";
import {
  type FieldType,
  type ResourceDefinition,
  resourceDefinition,
} from "../resources/registry.js";

/** The query-string parameters of a ZStack query API, already split into lists. */
export interface QueryRequest {
  conditions: string[];
  limit?: string;
  start?: string;
  count?: string;
  replyWithCount?: string;
  sort?: string;
  sortBy?: string;
  sortDirection?: string;
  fields?: string;
}

/** The caller of a query: admins see everything, others only their own and public resources. */
export interface Viewer {
  accountUuid: string;
  isAdmin: boolean;
}

export interface QueryReply {
  inventories?: Record<string, unknown>[];
  total?: number;
}

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10_000;

type Sql = RawBuilder<unknown>;

/**
 * Runs one query over any registered resource type. Every value is a bound parameter; a field
 * or operator the resource does not declare is an invalid argument that names it.
 */
export async function runQuery(
  db: Kysely<Database>,
  dialect: DialectName,
  type: string,
  request: QueryRequest,
  viewer: Viewer,
  fixed: QueryCondition[] = [],
): Promise<QueryReply> {
  const definition = resourceDefinition(type);
  const parsed = [...fixed, ...request.conditions.map(parseOrThrow)];
  const predicates = parsed.map((condition) => predicate(definition, "t0", condition, dialect, 0));
  const owner = ownerPredicate(definition, viewer);

  if (owner) {
    predicates.push(owner);
  }

  const where = predicates.length > 0 ? sql`where ${sql.join(predicates, sql` and `)}` : sql``;
  const from = sql`from ${sql.table(definition.table)} as t0 ${where}`;
  const total = await countRows(db, from, request);

  if (request.count === "true") {
    return { total };
  }

  const limit = integerParameter("limit", request.limit, DEFAULT_LIMIT, MAX_LIMIT);
  const start = integerParameter("start", request.start, 0, Number.MAX_SAFE_INTEGER);
  const order = orderBy(definition, request);
  const result = await sql<
    Record<string, unknown>
  >`select t0.* ${from} ${order} limit ${limit} offset ${start}`.execute(db);
  const rows = definition.enrich ? await definition.enrich(db, result.rows) : result.rows;
  const inventories = project(
    rows.map((row) => definition.toInventory(row)),
    request.fields,
    definition,
  );
  return total === undefined ? { inventories } : { inventories, total };
}

async function countRows(db: Kysely<Database>, from: Sql, request: QueryRequest) {
  if (request.count !== "true" && request.replyWithCount !== "true") {
    return undefined;
  }

  const result = await sql<{ total: number | string }>`select count(*) as total ${from}`.execute(
    db,
  );
  return Number(result.rows[0]?.total ?? 0);
}

function parseOrThrow(text: string): QueryCondition {
  const parsed = parseCondition(text);

  if (typeof parsed === "string") {
    throw new ApiError("invalidArgument", parsed);
  }

  return parsed;
}

function ownerPredicate(definition: ResourceDefinition, viewer: Viewer): Sql | undefined {
  if (viewer.isAdmin || definition.visibility === "public") {
    return undefined;
  }

  if (definition.visibility === "admin") {
    throw new ApiError(
      "permissionDenied",
      `only admin accounts may query ${definition.type} resources`,
    );
  }

  return sql`${sql.ref(`t0.${definition.ownerColumn ?? "accountUuid"}`)} = ${viewer.accountUuid}`;
}

/** Builds the SQL of one condition; dotted fields become nested EXISTS over declared relations. */
function predicate(
  definition: ResourceDefinition,
  alias: string,
  condition: QueryCondition,
  dialect: DialectName,
  depth: number,
): Sql {
  const [head, ...rest] = condition.field.split(".");

  if (head === "__systemTag__" || head === "__userTag__") {
    return tagPredicate(
      definition,
      alias,
      head === "__systemTag__" ? "System" : "User",
      condition,
      dialect,
    );
  }

  if (rest.length > 0) {
    const relation = definition.relations?.[head!];

    if (!relation) {
      throw unknownField(definition, condition.field);
    }

    const target = resourceDefinition(relation.resource);
    const inner = `t${depth + 1}${alias}`;
    const nested = predicate(
      target,
      inner,
      { ...condition, field: rest.join(".") },
      dialect,
      depth + 1,
    );
    return sql`exists (select 1 from ${sql.table(target.table)} as ${sql.id(inner)} where ${sql.ref(`${inner}.${relation.foreign}`)} = ${sql.ref(`${alias}.${relation.local}`)} and ${nested})`;
  }

  const type = definition.fields[head!];

  if (!type) {
    throw unknownField(definition, condition.field);
  }

  return comparison(sql.ref(`${alias}.${head}`), type, condition, dialect);
}

function tagPredicate(
  definition: ResourceDefinition,
  alias: string,
  tagType: string,
  condition: QueryCondition,
  dialect: DialectName,
): Sql {
  if (!definition.taggable) {
    throw new ApiError(
      "invalidArgument",
      `${definition.type} resources have no tags, so ${condition.field} cannot be queried`,
    );
  }

  const match = comparison(sql.ref("tg.tag"), "string", condition, dialect);
  return sql`exists (select 1 from tags as tg where tg."resourceUuid" = ${sql.ref(`${alias}.${definition.key}`)} and tg.type = ${tagType} and ${match})`;
}

function comparison(
  column: Sql,
  type: FieldType,
  condition: QueryCondition,
  dialect: DialectName,
): Sql {
  const { op, value } = condition;

  switch (op) {
    case "is null":
      return sql`${column} is null`;
    case "not null":
      return sql`${column} is not null`;
    case "?=":
    case "!?=": {
      const values = value.split(",").map((item) => coerce(type, item, condition));
      const list = sql.join(values.map((item) => sql`${item}`));
      return op === "?="
        ? sql`${column} in (${list})`
        : sql`(${column} is null or ${column} not in (${list}))`;
    }
    case "~=":
    case "!~=": {
      const like = dialect === "postgres" ? sql`ilike` : sql`like`;
      // Backslash escapes % and _ on both dialects; SQLite has no default escape character.
      const escapeClause = sql.raw("escape '\\'");
      const text = dialect === "postgres" ? sql`cast(${column} as text)` : column;
      return op === "~="
        ? sql`${text} ${like} ${value} ${escapeClause}`
        : sql`(${column} is null or ${text} not ${like} ${value} ${escapeClause})`;
    }
    case "!=":
      return sql`(${column} is null or ${column} <> ${coerce(type, value, condition)})`;
    default:
      return sql`${column} ${sql.raw(op)} ${coerce(type, value, condition)}`;
  }
}

function coerce(type: FieldType, value: string, condition: QueryCondition): string | number {
  if (type === "number") {
    const number = Number(value);

    if (value.trim() === "" || !Number.isFinite(number)) {
      throw new ApiError(
        "invalidArgument",
        `invalid value '${value}' for numeric field ${condition.field}: expected a number`,
      );
    }

    return number;
  }

  if (type === "date" && !/^\d{4}-\d{2}-\d{2}(T[\d:.]+Z?)?$/.test(value)) {
    throw new ApiError(
      "invalidArgument",
      `invalid value '${value}' for date field ${condition.field}: expected an ISO 8601 date such as 2026-12-04T16:32:06.000Z`,
    );
  }

  if (type === "boolean") {
    if (value !== "true" && value !== "false") {
      throw new ApiError(
        "invalidArgument",
        `invalid value '${value}' for boolean field ${condition.field}: expected true or false`,
      );
    }

    return value === "true" ? 1 : 0;
  }

  return value;
}

function unknownField(definition: ResourceDefinition, field: string) {
  const known = [
    ...Object.keys(definition.fields),
    ...Object.keys(definition.relations ?? {}).map((name) => `${name}.*`),
  ];
  return new ApiError(
    "invalidArgument",
    `unknown query field '${field}' for ${definition.type}; known fields: ${known.join(", ")}`,
  );
}

function orderBy(definition: ResourceDefinition, request: QueryRequest): Sql {
  const key = sql.ref(`t0.${definition.key}`);
  let field = definition.defaultSort ?? "createDate";
  let direction = "asc";

  if (request.sort) {
    const match = /^([+-]?)([A-Za-z][A-Za-z0-9]*)$/.exec(request.sort);

    if (!match) {
      throw new ApiError(
        "invalidArgument",
        `invalid sort '${request.sort}': expected +field or -field`,
      );
    }

    direction = match[1] === "-" ? "desc" : "asc";
    field = match[2]!;
  } else if (request.sortBy) {
    field = request.sortBy;
    direction = request.sortDirection === "desc" ? "desc" : "asc";
  }

  if (!definition.fields[field]) {
    throw new ApiError("invalidArgument", `unknown sort field '${field}' for ${definition.type}`);
  }

  return sql`order by ${sql.ref(`t0.${field}`)} ${sql.raw(direction)}, ${key} ${sql.raw(direction)}`;
}

function integerParameter(name: string, value: string | undefined, fallback: number, max: number) {
  if (value === undefined) {
    return fallback;
  }

  const number = Number(value);

  if (!/^\d+$/.test(value) || number > max) {
    throw new ApiError(
      "invalidArgument",
      `invalid ${name} '${value}': expected an integer from 0 to ${max}`,
    );
  }

  return number;
}

function project(
  inventories: Record<string, unknown>[],
  fields: string | undefined,
  definition: ResourceDefinition,
) {
  if (!fields) {
    return inventories;
  }

  const names = fields.split(",").filter(Boolean);
  const unknown = names.filter((name) => !definition.fields[name]);

  if (unknown.length > 0) {
    throw new ApiError(
      "invalidArgument",
      `unknown field '${unknown[0]}' in fields for ${definition.type}`,
    );
  }

  return inventories.map((inventory) =>
    Object.fromEntries(names.map((name) => [name, inventory[name]])),
  );
}
