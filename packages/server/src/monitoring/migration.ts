import type { DialectName } from "../db/connect.js";
import { type Db, resourceColumns, resourceIndexes } from "../db/migration-helpers.js";

/** Creates the metric series, raw points, rollups and alarm tables. */
export async function createMonitoringTables(db: Db, dialect: DialectName) {
  const series = db.schema.createTable("metricSeries");
  await (dialect === "postgres"
    ? series.addColumn("id", "bigserial", (column) => column.primaryKey())
    : series.addColumn("id", "integer", (column) => column.primaryKey().autoIncrement())
  )
    .addColumn("namespace", "varchar(32)", (column) => column.notNull())
    .addColumn("metricName", "varchar(64)", (column) => column.notNull())
    .addColumn("resourceUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("labels", "varchar(1024)", (column) => column.notNull())
    .execute();
  await db.schema
    .createIndex("metricSeries_key")
    .on("metricSeries")
    .columns(["namespace", "metricName", "labels"])
    .unique()
    .execute();
  await db.schema
    .createIndex("metricSeries_resource")
    .on("metricSeries")
    .columns(["resourceUuid"])
    .execute();

  // The primary keys are the only indexes: every query reads one series over a time range.
  await db.schema
    .createTable("metricPoints")
    .addColumn("seriesId", "bigint", (column) => column.notNull())
    .addColumn("time", "bigint", (column) => column.notNull())
    .addColumn("value", "double precision", (column) => column.notNull())
    .addPrimaryKeyConstraint("metricPoints_pk", ["seriesId", "time"])
    .execute();
  await db.schema
    .createTable("metricRollups")
    .addColumn("seriesId", "bigint", (column) => column.notNull())
    .addColumn("time", "bigint", (column) => column.notNull())
    .addColumn("sampleCount", "integer", (column) => column.notNull())
    .addColumn("total", "double precision", (column) => column.notNull())
    .addColumn("minValue", "double precision", (column) => column.notNull())
    .addColumn("maxValue", "double precision", (column) => column.notNull())
    .addPrimaryKeyConstraint("metricRollups_pk", ["seriesId", "time"])
    .execute();

  await resourceColumns(db.schema.createTable("zwatchAlarms"))
    .addColumn("namespace", "varchar(32)", (column) => column.notNull())
    .addColumn("metricName", "varchar(64)", (column) => column.notNull())
    .addColumn("comparisonOperator", "varchar(32)", (column) => column.notNull())
    .addColumn("threshold", "double precision", (column) => column.notNull())
    .addColumn("period", "integer", (column) => column.notNull())
    .addColumn("repeatCount", "integer", (column) => column.notNull())
    .addColumn("labels", "text", (column) => column.notNull())
    .addColumn("state", "varchar(16)", (column) => column.notNull())
    .addColumn("status", "varchar(32)", (column) => column.notNull())
    .addColumn("lastStatusChangeDate", "varchar(32)")
    .execute();
  await resourceIndexes(db, "zwatchAlarms");
}
