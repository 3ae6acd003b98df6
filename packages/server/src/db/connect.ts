import Sqlite from "better-sqlite3";
import { CompiledQuery, Kysely, Migrator, PostgresDialect } from "kysely";
import pg from "pg";
import { startCheckpointer } from "./checkpointer.js";
import { migrations } from "./migrations.js";
import type { Database } from "./schema.js";
import { QueuedSqliteDialect } from "./sqlite-driver.js";

export type DialectName = "sqlite" | "postgres";

/** An open database with the dialect it speaks. */
export interface Db {
  kysely: Kysely<Database>;
  dialect: DialectName;
  /**
   * Kysely for reads outside transactions. On SQLite it is a second, read-only connection: in
   * WAL mode it reads the last committed state, so a query neither waits for a write
   * transaction on the main connection nor sees its uncommitted rows. On PostgreSQL it is
   * `kysely` itself. Never open a transaction on it.
   */
  reader: Kysely<Database>;
  /** Runs one read-only statement through `reader`, skipping Kysely's query compiler. */
  select<R>(sql: string, parameters: readonly unknown[]): Promise<R[]>;
  close(): Promise<void>;
}

// PostgreSQL returns bigint columns as strings by default; our sizes fit in a JS number.
pg.types.setTypeParser(20, (value) => Number.parseInt(value, 10));

/**
 * Opens SQLite (a file path) or PostgreSQL (a `postgres://` URL) and runs the migrations, so
 * the schema is current before anything else touches it.
 */
export async function openDatabase(location: string): Promise<Db> {
  const db =
    location.startsWith("postgres://") || location.startsWith("postgresql://")
      ? openPostgres(location)
      : openSqlite(location);

  await migrate(db);
  return db;
}

function openSqlite(path: string): Db {
  const database = new Sqlite(path);
  database.pragma("journal_mode = WAL");
  database.pragma("synchronous = NORMAL");
  database.pragma("foreign_keys = ON");
  database.pragma("busy_timeout = 5000");
  const dialect = new QueuedSqliteDialect(database);
  const kysely = new Kysely<Database>({ dialect });

  // An in-memory database is private to its connection, so there reads share the main one.
  if (path === ":memory:" || path === "") {
    return {
      kysely,
      dialect: "sqlite",
      reader: kysely,
      select: async (sql, parameters) => dialect.connection.all(sql, parameters),
      close: () => kysely.destroy(),
    };
  }

  // The worker checkpoints. The main connection does it too only when the log passes this many
  // pages (4 KiB each), which happens when the worker falls far behind or has stopped.
  database.pragma("wal_autocheckpoint = 16384");
  const checkpointer = startCheckpointer(path, reportCheckpointError);
  const readerDatabase = new Sqlite(path, { readonly: true });
  readerDatabase.pragma("busy_timeout = 5000");
  const readerDialect = new QueuedSqliteDialect(readerDatabase);
  const reader = new Kysely<Database>({ dialect: readerDialect });
  return {
    kysely,
    dialect: "sqlite",
    reader,
    select: async (sql, parameters) => readerDialect.connection.all(sql, parameters),
    close: async () => {
      await checkpointer.stop();
      await reader.destroy();
      await kysely.destroy();
    },
  };
}

let lastCheckpointReport = 0;

/** Reports a failed checkpoint as a process warning, at most once a minute. */
function reportCheckpointError(error: string) {
  if (Date.now() - lastCheckpointReport < 60_000) {
    return;
  }

  lastCheckpointReport = Date.now();
  process.emitWarning(`SQLite WAL checkpoint failed: ${error}`);
}

function openPostgres(url: string): Db {
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    kysely,
    dialect: "postgres",
    reader: kysely,
    select: async <R>(sql: string, parameters: readonly unknown[]) =>
      (await kysely.executeQuery<R>(CompiledQuery.raw(sql, [...parameters]))).rows,
    close: () => kysely.destroy(),
  };
}

async function migrate(db: Db) {
  const provider = { getMigrations: async () => migrations(db.dialect) };
  // Modules add migrations independently, so a newer module may bring a lower number.
  const migrator = new Migrator({ db: db.kysely, provider, allowUnorderedMigrations: true });
  const { error, results } = await migrator.migrateToLatest();

  if (error) {
    const failed = results?.find((result) => result.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`failed to migrate the database at migration ${failed}: ${String(error)}`, {
      cause: error,
    });
  }
}
