import type Sqlite from "better-sqlite3";
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  SqliteDialect,
} from "kysely";

const STATEMENT_CACHE_SIZE = 500;

/**
 * SQLite through better-sqlite3 with two changes to Kysely's own driver: waiters for the one
 * connection queue in arrival order (Kysely's mutex wakes every waiter at once, so under load
 * some requests starve), and prepared statements are reused by SQL text.
 */
export class QueuedSqliteDialect extends SqliteDialect {
  /** The one connection; `all` on it bypasses the queue, so use it only for lone reads. */
  readonly connection: StatementCacheConnection;

  constructor(private readonly database: Sqlite.Database) {
    super({ database });
    this.connection = new StatementCacheConnection(database);
  }

  override createDriver(): Driver {
    return new QueuedSqliteDriver(this.database, this.connection);
  }
}

class QueuedSqliteDriver implements Driver {
  private readonly waiters: Array<() => void> = [];
  private busy = false;

  constructor(
    private readonly database: Sqlite.Database,
    private readonly connection: StatementCacheConnection,
  ) {}

  async init() {}

  acquireConnection(): Promise<DatabaseConnection> {
    if (!this.busy) {
      this.busy = true;
      return Promise.resolve(this.connection);
    }

    return new Promise((resolve) => this.waiters.push(() => resolve(this.connection)));
  }

  async releaseConnection() {
    const next = this.waiters.shift();

    if (next) {
      next();
    } else {
      this.busy = false;
    }
  }

  async beginTransaction(connection: DatabaseConnection) {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }

  async commitTransaction(connection: DatabaseConnection) {
    await connection.executeQuery(CompiledQuery.raw("commit"));
  }

  async rollbackTransaction(connection: DatabaseConnection) {
    await connection.executeQuery(CompiledQuery.raw("rollback"));
  }

  async destroy() {
    this.database.close();
  }
}

type Row = Record<string, unknown>;

/** A statement in raw mode with the function that turns its value arrays into row objects. */
interface RawStatement {
  statement: Sqlite.Statement;
  toRow: (values: unknown[]) => Row;
}

class StatementCacheConnection implements DatabaseConnection {
  private readonly statements = new Map<string, Sqlite.Statement>();
  private readonly rawStatements = new Map<string, RawStatement>();

  constructor(private readonly database: Sqlite.Database) {}

  /**
   * Runs one statement that returns rows, synchronously. better-sqlite3 builds each row object
   * one property at a time, which for a page of 100 VM rows took half of the query's time, so
   * this reads value arrays and builds the objects with a literal compiled per statement.
   */
  all<R>(sql: string, parameters: readonly unknown[]): R[] {
    const { statement, toRow } = cached(this.rawStatements, sql, () => this.prepareRaw(sql));
    const rows = statement.all(parameters) as unknown[][];
    return rows.map(toRow) as R[];
  }

  executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const statement = cached(this.statements, compiled.sql, () =>
      this.database.prepare(compiled.sql),
    );
    const parameters = compiled.parameters as unknown[];

    if (statement.reader) {
      return Promise.resolve({ rows: statement.all(parameters) as R[] });
    }

    const { changes, lastInsertRowid } = statement.run(parameters);
    return Promise.resolve({
      numAffectedRows: BigInt(changes),
      insertId: BigInt(lastInsertRowid),
      rows: [],
    });
  }

  // biome-ignore lint/correctness/useYield: streaming is not used; Kysely requires the method.
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error("streaming queries are not supported on SQLite");
  }

  private prepareRaw(sql: string): RawStatement {
    const statement = this.database.prepare(sql).raw(true);
    const names = statement.columns().map((column) => column.name);
    // Column names come from the schema and are quoted as JSON strings. As with row objects, a
    // later column of the same name wins.
    const properties = names.map((name, index) => `${JSON.stringify(name)}: values[${index}]`);
    const toRow = new Function("values", `return { ${properties.join(", ")} };`);
    return { statement, toRow: toRow as RawStatement["toRow"] };
  }
}

/**
 * Returns the cached entry for `sql`, creating it on a miss. When the cache is full it evicts the
 * oldest entry. Hits do not reorder the map, because moving a hot entry to the end cost about
 * 1 µs per query in the rest-core profile. A hot statement that gets evicted is prepared again.
 */
function cached<T>(cache: Map<string, T>, sql: string, create: () => T): T {
  let entry = cache.get(sql);

  if (entry === undefined) {
    entry = create();
    cache.set(sql, entry);

    if (cache.size > STATEMENT_CACHE_SIZE) {
      cache.delete(cache.keys().next().value as string);
    }
  }

  return entry;
}
