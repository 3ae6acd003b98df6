import Sqlite from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect } from "kysely";
import pg from "pg";
import { migrations } from "./migrations.js";
import type { Database } from "./schema.js";
import { QueuedSqliteDialect } from "./sqlite-driver.js";

export type DialectName = "sqlite" | "postgres";

/** An open database with the dialect it speaks. */
export interface Db {
  kysely: Kysely<Database>;
  dialect: DialectName;
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

  const kysely = new Kysely<Database>({ dialect: new QueuedSqliteDialect(database) });
  return { kysely, dialect: "sqlite", close: () => kysely.destroy() };
}

function openPostgres(url: string): Db {
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { kysely, dialect: "postgres", close: () => kysely.destroy() };
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
