import { ApiError, parseCondition, type QueryCondition } from "@tstack/api";
import type { Db, DialectName } from "../db/connect.js";
import {
  fragment,
  identifier,
  joinFragments,
  rawSql,
  renderSql,
  type SqlFragment,
} from "../db/sql-fragment.js";
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
/**
 * Relations one dotted field may cross. Each is a nested EXISTS, and SQLite (better-sqlite3 12)
 * failed to prepare a query with 30 of them ("Recursion limit").
 */
const MAX_RELATION_DEPTH = 10;

type Sql = SqlFragment;
type Row = Record<string, unknown>;

/**
 * Runs one query over any registered resource type on the database's reader, so on SQLite it
 * does not queue behind a write transaction. Every value is a bound parameter. A field or
 * operator that the resource does not declare is an invalid argument that names it.
 */
export async function runQuery(
  db: Db,
  type: string,
  request: QueryRequest,
  viewer: Viewer,
  fixed: QueryCondition[] = [],
): Promise<QueryReply> {
  const definition = resourceDefinition(type);

  if (isPlainKeyLookup(definition, request, fixed)) {
    const found = await selectByKey(db, definition, fixed[0]!.value, viewer);
    const rows = definition.enrich ? await definition.enrich(db.reader, found) : found;
    return { inventories: inventoriesOf(definition, rows, request.fields) };
  }

  const dialect = db.dialect;
  const parsed = [...fixed, ...request.conditions.map(parseOrThrow)];
  const predicates = parsed.map((condition) => predicate(definition, "t0", condition, dialect, 0));
  const owner = ownerPredicate(definition, viewer);

  if (owner) {
    predicates.push(owner);
  }

  const from = fromClause(definition, predicates);
  const total = await countRows(db, from, request);

  if (booleanParameter("count", request.count)) {
    return { total };
  }

  const page = pageClause(definition, request, byKey(definition, parsed));
  const select = renderSql(fragment`select t0.* ${from} ${page}`, dialect);
  const found = await db.select<Row>(select.sql, select.parameters);
  const rows = definition.enrich ? await definition.enrich(db.reader, found) : found;
  const inventories = inventoriesOf(definition, rows, request.fields);
  return total === undefined ? { inventories } : { inventories, total };
}

function fromClause(definition: ResourceDefinition, predicates: Sql[]) {
  const where =
    predicates.length > 0 ? fragment`where ${joinFragments(predicates, " and ")}` : rawSql("");
  return fragment`from ${identifier(definition.table)} as t0 ${where}`;
}

function inventoriesOf(definition: ResourceDefinition, rows: Row[], fields: string | undefined) {
  return project(
    rows.map((row) => definition.toInventory(row)),
    fields,
    definition,
  );
}

/**
 * True for a GET of one resource by its string key with no other condition, count, paging or
 * sort. `selectByKey` serves these requests with SQL rendered once.
 */
function isPlainKeyLookup(
  definition: ResourceDefinition,
  request: QueryRequest,
  fixed: QueryCondition[],
) {
  const condition = fixed[0];
  return (
    fixed.length === 1 &&
    condition!.field === definition.key &&
    condition!.op === "=" &&
    definition.fields[definition.key] === "string" &&
    request.conditions.length === 0 &&
    request.count === undefined &&
    request.replyWithCount === undefined &&
    request.limit === undefined &&
    request.start === undefined &&
    request.sort === undefined &&
    request.sortBy === undefined
  );
}

/**
 * SQL text of lookups by key, per resource definition, dialect and owner filter. In a perf
 * profile of the rest-core bench, building and rendering the fragments of every GET by uuid cost
 * about 2 µs of the 35 µs of server CPU per request.
 */
const keyLookupSql = new WeakMap<ResourceDefinition, Map<string, string>>();

/**
 * Selects the row of one key with the SQL of the general path, rendered on first use. Its
 * parameters are the key, then the viewer's account when the owner filter applies.
 */
function selectByKey(db: Db, definition: ResourceDefinition, key: string, viewer: Viewer) {
  const ownerFiltered = isOwnerFiltered(definition, viewer);
  const parameters = ownerFiltered ? [key, viewer.accountUuid] : [key];
  const shape = `${db.dialect} ${ownerFiltered ? "owner" : "all"}`;
  let byShape = keyLookupSql.get(definition);

  if (!byShape) {
    byShape = new Map();
    keyLookupSql.set(definition, byShape);
  }

  let sql = byShape.get(shape);

  if (sql === undefined) {
    const condition = { field: definition.key, op: "=" as const, value: key };
    const predicates = [predicate(definition, "t0", condition, db.dialect, 0)];
    const owner = ownerPredicate(definition, viewer);

    if (owner) {
      predicates.push(owner);
    }

    sql = renderSql(fragment`select t0.* ${fromClause(definition, predicates)}`, db.dialect).sql;
    byShape.set(shape, sql);
  }

  return db.select<Row>(sql, parameters);
}

async function countRows(db: Db, from: Sql, request: QueryRequest) {
  const counted =
    booleanParameter("count", request.count) ||
    booleanParameter("replyWithCount", request.replyWithCount);

  if (!counted) {
    return undefined;
  }

  const count = renderSql(fragment`select count(*) as total ${from}`, db.dialect);
  const rows = await db.select<{ total: number | string }>(count.sql, count.parameters);
  return Number(rows[0]?.total ?? 0);
}

/** True when a condition pins the key column, so at most one row can match. */
function byKey(definition: ResourceDefinition, conditions: QueryCondition[]) {
  return conditions.some((condition) => condition.field === definition.key && condition.op === "=");
}

/**
 * Builds ORDER BY, LIMIT and OFFSET. A lookup by key returns at most one row, so it skips the
 * sort, and LIMIT and OFFSET unless the request pages explicitly. In a better-sqlite3 12
 * micro-benchmark those clauses doubled the time of a primary-key lookup.
 */
function pageClause(definition: ResourceDefinition, request: QueryRequest, oneRow: boolean): Sql {
  const limit = integerParameter("limit", request.limit, DEFAULT_LIMIT, MAX_LIMIT);
  const start = integerParameter("start", request.start, 0, Number.MAX_SAFE_INTEGER);
  const order = orderBy(definition, request);

  if (!oneRow) {
    return fragment`${order} limit ${limit} offset ${start}`;
  }

  if (request.limit === undefined && request.start === undefined) {
    return rawSql("");
  }

  return fragment`limit ${limit} offset ${start}`;
}

function parseOrThrow(text: string): QueryCondition {
  const parsed = parseCondition(text);

  if (typeof parsed === "string") {
    throw new ApiError("invalidArgument", parsed);
  }

  return parsed;
}

function ownerPredicate(definition: ResourceDefinition, viewer: Viewer): Sql | undefined {
  if (!isOwnerFiltered(definition, viewer)) {
    return undefined;
  }

  const owner = identifier("t0", definition.ownerColumn ?? "accountUuid");

  if (definition.visibility === "shared") {
    return fragment`(${owner} = ${viewer.accountUuid} or ${owner} in (select uuid from accounts where type = 'SystemAdmin'))`;
  }

  return fragment`${owner} = ${viewer.accountUuid}`;
}

/** True when the viewer sees only its own rows. Throws when the viewer may see none. */
function isOwnerFiltered(definition: ResourceDefinition, viewer: Viewer) {
  if (viewer.isAdmin || definition.visibility === "public") {
    return false;
  }

  if (definition.visibility === "admin") {
    throw new ApiError(
      "permissionDenied",
      `only admin accounts may query ${definition.type} resources`,
    );
  }

  return true;
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

  if (depth === 0 && rest.length > MAX_RELATION_DEPTH) {
    throw new ApiError(
      "invalidArgument",
      `query field '${condition.field}' crosses ${rest.length} relations; at most ${MAX_RELATION_DEPTH} are supported`,
    );
  }

  if (rest.length > 0) {
    const relation = ownEntry(definition.relations, head!);

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
    return fragment`exists (select 1 from ${identifier(target.table)} as ${identifier(inner)} where ${identifier(inner, relation.foreign)} = ${identifier(alias, relation.local)} and ${nested})`;
  }

  const type = ownEntry(definition.fields, head!);

  if (!type) {
    throw unknownField(definition, condition.field);
  }

  return comparison(identifier(alias, head!), type, condition, dialect);
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

  const match = comparison(identifier("tg", "tag"), "string", condition, dialect);
  return fragment`exists (select 1 from tags as tg where tg."resourceUuid" = ${identifier(alias, definition.key)} and tg.type = ${tagType} and ${match})`;
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
      return fragment`${column} is null`;
    case "not null":
      return fragment`${column} is not null`;
    case "?=":
    case "!?=": {
      const values = value.split(",").map((item) => coerce(type, item, condition));
      const list = joinFragments(
        values.map((item) => fragment`${item}`),
        ", ",
      );
      return op === "?="
        ? fragment`${column} in (${list})`
        : fragment`(${column} is null or ${column} not in (${list}))`;
    }
    case "~=":
    case "!~=": {
      const like = rawSql(dialect === "postgres" ? "ilike" : "like");
      // Backslash escapes % and _ on both dialects; SQLite has no default escape character.
      const escapeClause = rawSql("escape '\\'");
      const text = dialect === "postgres" ? fragment`cast(${column} as text)` : column;
      return op === "~="
        ? fragment`${text} ${like} ${value} ${escapeClause}`
        : fragment`(${column} is null or ${text} not ${like} ${value} ${escapeClause})`;
    }
    case "!=":
      return fragment`(${column} is null or ${column} <> ${coerce(type, value, condition)})`;
    default:
      return fragment`${column} ${rawSql(op)} ${coerce(type, value, condition)}`;
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

/**
 * Returns the entry of a field or relation name, ignoring inherited properties, so names such
 * as `constructor` or `__proto__` are unknown fields rather than SQL columns.
 */
function ownEntry<T>(entries: Record<string, T> | undefined, name: string): T | undefined {
  return entries && Object.hasOwn(entries, name) ? entries[name] : undefined;
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
  const key = identifier("t0", definition.key);
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
    direction = sortDirectionOf(request.sortDirection);
  }

  if (!ownEntry(definition.fields, field)) {
    throw new ApiError("invalidArgument", `unknown sort field '${field}' for ${definition.type}`);
  }

  return fragment`order by ${identifier("t0", field)} ${rawSql(direction)}, ${key} ${rawSql(direction)}`;
}

/** Reads a boolean query parameter: true or false in any case, or absent for false. */
function booleanParameter(name: string, text: string | undefined) {
  const value = (text ?? "false").toLowerCase();

  if (value !== "true" && value !== "false") {
    throw new ApiError("invalidArgument", `invalid ${name} '${text}': expected true or false`);
  }

  return value === "true";
}

function sortDirectionOf(text: string | undefined) {
  const direction = (text ?? "asc").toLowerCase();

  if (direction !== "asc" && direction !== "desc") {
    throw new ApiError("invalidArgument", `invalid sortDirection '${text}': expected asc or desc`);
  }

  return direction;
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
  const unknown = names.filter((name) => !ownEntry(definition.fields, name));

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
