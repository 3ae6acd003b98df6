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

class StatementCacheConnection implements DatabaseConnection {
  private readonly statements = new Map<string, Sqlite.Statement>();

  constructor(private readonly database: Sqlite.Database) {}

  /** Runs one statement that returns rows, synchronously. */
  all<R>(sql: string, parameters: readonly unknown[]): R[] {
    return this.prepare(sql).all(parameters) as R[];
  }

  executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const statement = this.prepare(compiled.sql);
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

  private prepare(sql: string) {
    let statement = this.statements.get(sql);

    if (statement) {
      // Re-insert, so the map's first key is the least recently used one.
      this.statements.delete(sql);
    } else {
      statement = this.database.prepare(sql);
    }

    this.statements.set(sql, statement);

    if (this.statements.size > STATEMENT_CACHE_SIZE) {
      this.statements.delete(this.statements.keys().next().value as string);
    }

    return statement;
  }
}
