import { CompiledQuery, type Kysely, sql } from "kysely";
import type { DialectName } from "../db/connect.js";
import type { Database } from "../db/schema.js";

/** A sample ready to store, its labels already validated. */
export interface StoredSample {
  namespace: string;
  metricName: string;
  resourceUuid: string;
  labels: Record<string, string>;
  value: number;
}

/** A series matched by a query, with its labels parsed. */
export interface SeriesRow {
  id: number;
  resourceUuid: string;
  labels: Record<string, string>;
}

/** Samples of one series in one period bucket, from raw points and rollups together. */
export interface BucketRow {
  seriesId: number;
  bucket: number;
  sampleCount: number;
  total: number;
  minValue: number;
  maxValue: number;
}

// SQLite (since 3.32) accepts at most 32766 bound values per statement by default, and
// PostgreSQL 65535. A bucket query binds this many series ids, far below both.
const SERIES_PER_QUERY = 500;
const SERIES_CACHE_LIMIT = 200_000;

/**
 * Inserts a batch's points, given as one JSON array of `[seriesId, value]` pairs, at one time.
 * Each dialect has one statement text, so it is prepared once. Kysely's multi-row insert built
 * a statement per row count and compiled every row's values, a cost that grew with the VMs.
 * SQLite needs `where true` to parse an upsert whose rows come from a select.
 */
const INSERT_POINTS: Record<DialectName, string> = {
  sqlite: `insert into "metricPoints" ("seriesId", "time", "value")
    select "value" ->> 0, ?, "value" ->> 1 from json_each(?) where true
    on conflict ("seriesId", "time") do nothing`,
  postgres: `insert into "metricPoints" ("seriesId", "time", "value")
    select ("point" ->> 0)::bigint, $1::bigint, ("point" ->> 1)::double precision
    from jsonb_array_elements($2::jsonb) as "point"
    on conflict ("seriesId", "time") do nothing`,
};

/** Inserts series given as one JSON array of `[namespace, metricName, resourceUuid, labels]`. */
const INSERT_SERIES: Record<DialectName, string> = {
  sqlite: `insert into "metricSeries" ("namespace", "metricName", "resourceUuid", "labels")
    select "value" ->> 0, "value" ->> 1, "value" ->> 2, "value" ->> 3 from json_each(?) where true
    on conflict ("namespace", "metricName", "labels") do nothing`,
  postgres: `insert into "metricSeries" ("namespace", "metricName", "resourceUuid", "labels")
    select "key" ->> 0, "key" ->> 1, "key" ->> 2, "key" ->> 3
    from jsonb_array_elements($1::jsonb) as "key"
    on conflict ("namespace", "metricName", "labels") do nothing`,
};

/** Selects the series of the resources and labels given as two JSON arrays of strings. */
const SELECT_SERIES: Record<DialectName, string> = {
  sqlite: `select "id", "namespace", "metricName", "labels" from "metricSeries"
    where "resourceUuid" in (select "value" from json_each(?))
    and "labels" in (select "value" from json_each(?))`,
  postgres: `select "id", "namespace", "metricName", "labels" from "metricSeries"
    where "resourceUuid" in (select jsonb_array_elements_text($1::jsonb))
    and "labels" in (select jsonb_array_elements_text($2::jsonb))`,
};

interface SeriesKeyRow {
  id: number | string;
  namespace: string;
  metricName: string;
  labels: string;
}

/** Returns labels as JSON with sorted keys, the form series are stored and compared in. */
export function canonicalLabels(labels: Record<string, string>) {
  const sorted = Object.keys(labels)
    .sort()
    .map((key) => [key, labels[key]]);
  return JSON.stringify(Object.fromEntries(sorted));
}

/** A pushed batch waiting for the next write, with its caller's promise. */
interface QueuedBatch {
  time: number;
  samples: StoredSample[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Time a batch waits for others before it is written. The batches of that time share one
 * transaction, so the pages they share are written once a transaction, not once a batch.
 */
const WRITE_DELAY_MS = 100;

/**
 * Metric series and samples in the database: raw points for the raw retention, then rollups per
 * step until the retention ends. Series ids are cached in memory, so a batch costs one
 * insert of points once its series exist.
 */
export class MetricStore {
  readonly #db: Kysely<Database>;
  readonly #dialect: DialectName;
  readonly #seriesIds = new Map<string, number>();
  #queued: QueuedBatch[] = [];
  #writeTimer: NodeJS.Timeout | undefined;

  constructor(db: Kysely<Database>, dialect: DialectName) {
    this.#db = db;
    this.#dialect = dialect;
  }

  /**
   * Stores the samples of one batch at `time` (ms); a repeated batch is ignored. Resolves once
   * the batch is committed, together with the batches of the next `WRITE_DELAY_MS`, and
   * rejects with their transaction's error.
   */
  insert(time: number, samples: StoredSample[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queued.push({ time, samples, resolve, reject });
      this.#writeTimer ??= setTimeout(() => void this.#writeQueued(), WRITE_DELAY_MS);
    });
  }

  async #writeQueued() {
    const batches = this.#queued;
    this.#queued = [];
    this.#writeTimer = undefined;

    try {
      await this.#db.transaction().execute((tx) => this.#write(tx, batches));
    } catch (error) {
      // Series created in the failed transaction may be cached, so the cache starts over.
      this.#seriesIds.clear();

      for (const batch of batches) {
        batch.reject(error);
      }

      return;
    }

    for (const batch of batches) {
      batch.resolve();
    }
  }

  async #write(tx: Kysely<Database>, batches: QueuedBatch[]) {
    const ids = await this.#seriesIdsOf(
      tx,
      batches.flatMap((batch) => batch.samples),
    );
    const pointsByTime = new Map<number, Array<[number, number]>>();
    let index = 0;

    for (const batch of batches) {
      const points = pointsByTime.get(batch.time) ?? [];

      for (const sample of batch.samples) {
        points.push([ids[index++]!, sample.value]);
      }

      pointsByTime.set(batch.time, points);
    }

    for (const [time, points] of pointsByTime) {
      await tx.executeQuery(
        CompiledQuery.raw(INSERT_POINTS[this.#dialect], [time, JSON.stringify(points)]),
      );
    }
  }

  /** Returns the series of one metric, optionally only those of the given resources. */
  async findSeries(
    namespace: string,
    metricName: string,
    scope: { resourceUuid?: string; accountUuid?: string },
  ): Promise<SeriesRow[]> {
    let query = this.#db
      .selectFrom("metricSeries")
      .select(["id", "resourceUuid", "labels"])
      .where("namespace", "=", namespace)
      .where("metricName", "=", metricName);

    if (scope.resourceUuid) {
      query = query.where("resourceUuid", "=", scope.resourceUuid);
    }

    if (scope.accountUuid) {
      const owned = this.#db
        .selectFrom("resources")
        .select("uuid")
        .where("accountUuid", "=", scope.accountUuid);
      query = query.where("resourceUuid", "in", owned);
    }

    const rows = await query.execute();
    return rows.map((row) => ({
      id: Number(row.id),
      resourceUuid: row.resourceUuid,
      labels: JSON.parse(row.labels) as Record<string, string>,
    }));
  }

  /**
   * Sums samples of the given series per period bucket over [startTime, endTime) in ms. Bucket n
   * spans [origin + n * periodMs, origin + (n + 1) * periodMs). Rolled-up steps count whole, by
   * their start time, so a period shorter than the rollup step leaves empty buckets in old data.
   */
  async buckets(
    seriesIds: number[],
    range: { startTime: number; endTime: number; periodMs: number; origin: number },
  ) {
    const { startTime, endTime, periodMs, origin } = range;
    const rows: BucketRow[] = [];

    // Inlined rather than bound, so SQLite divides integers instead of floating-point values.
    const bucket = sql<number>`(${sql.ref("time")} - ${sql.lit(Math.trunc(origin))}) / ${sql.lit(Math.trunc(periodMs))}`;

    for (let start = 0; start < seriesIds.length; start += SERIES_PER_QUERY) {
      const chunk = seriesIds.slice(start, start + SERIES_PER_QUERY);
      const raw = await this.#db
        .selectFrom("metricPoints")
        .select((eb) => [
          "seriesId",
          bucket.as("bucket"),
          eb.fn.countAll<number>().as("sampleCount"),
          eb.fn.sum<number>("value").as("total"),
          eb.fn.min<number>("value").as("minValue"),
          eb.fn.max<number>("value").as("maxValue"),
        ])
        .where("seriesId", "in", chunk)
        .where("time", ">=", startTime)
        .where("time", "<", endTime)
        .groupBy(["seriesId", bucket])
        .execute();
      const rolled = await this.#db
        .selectFrom("metricRollups")
        .select((eb) => [
          "seriesId",
          bucket.as("bucket"),
          eb.fn.sum<number>("sampleCount").as("sampleCount"),
          eb.fn.sum<number>("total").as("total"),
          eb.fn.min<number>("minValue").as("minValue"),
          eb.fn.max<number>("maxValue").as("maxValue"),
        ])
        .where("seriesId", "in", chunk)
        .where("time", ">=", startTime)
        .where("time", "<", endTime)
        .groupBy(["seriesId", bucket])
        .execute();

      // PostgreSQL returns sum() of integers as numeric, which node-postgres hands over as text.
      for (const row of [...raw, ...rolled]) {
        rows.push({
          seriesId: Number(row.seriesId),
          bucket: Number(row.bucket),
          sampleCount: Number(row.sampleCount),
          total: Number(row.total),
          minValue: Number(row.minValue),
          maxValue: Number(row.maxValue),
        });
      }
    }

    return rows;
  }

  /**
   * Rolls raw points older than `rawBefore` (ms) into steps of `stepMs`, deletes rollups older
   * than `keepAfter`, and deletes series left without data. `rawBefore` is rounded down to a step
   * boundary, so each step is rolled up once, from all its points.
   */
  async sweep(rawBefore: number, keepAfter: number, stepMs: number) {
    const cutoff = Math.floor(rawBefore / stepMs) * stepMs;
    const step = sql<number>`(${sql.ref("time")} / ${sql.lit(Math.trunc(stepMs))}) * ${sql.lit(Math.trunc(stepMs))}`;

    await this.#db.transaction().execute(async (tx) => {
      // NOTE: a point that arrives for a step already rolled up is dropped at the next sweep.
      await tx
        .insertInto("metricRollups")
        .columns(["seriesId", "time", "sampleCount", "total", "minValue", "maxValue"])
        .expression(
          tx
            .selectFrom("metricPoints")
            .select((eb) => [
              "seriesId",
              step.as("time"),
              eb.fn.countAll<number>().as("sampleCount"),
              eb.fn.sum<number>("value").as("total"),
              eb.fn.min<number>("value").as("minValue"),
              eb.fn.max<number>("value").as("maxValue"),
            ])
            .where("time", "<", cutoff)
            .groupBy(["seriesId", step]),
        )
        .onConflict((conflict) => conflict.columns(["seriesId", "time"]).doNothing())
        .execute();
      await tx.deleteFrom("metricPoints").where("time", "<", cutoff).execute();
      await tx.deleteFrom("metricRollups").where("time", "<", keepAfter).execute();
      await tx
        .deleteFrom("metricSeries")
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom("metricPoints")
                .select("seriesId")
                .whereRef("metricPoints.seriesId", "=", "metricSeries.id"),
            ),
          ),
        )
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom("metricRollups")
                .select("seriesId")
                .whereRef("metricRollups.seriesId", "=", "metricSeries.id"),
            ),
          ),
        )
        .execute();
    });

    // Deleted series must not be reused from the cache; the next batch looks them up again.
    this.#seriesIds.clear();
  }

  /** Counts stored rows, for tests and the benchmark. */
  async counts() {
    const count = async (table: "metricSeries" | "metricPoints" | "metricRollups") => {
      const row = await this.#db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll<number>().as("count"))
        .executeTakeFirstOrThrow();
      return Number(row.count);
    };

    return {
      series: await count("metricSeries"),
      points: await count("metricPoints"),
      rollups: await count("metricRollups"),
    };
  }

  async #seriesIdsOf(tx: Kysely<Database>, samples: StoredSample[]): Promise<number[]> {
    const keys = samples.map((sample) => ({
      namespace: sample.namespace,
      metricName: sample.metricName,
      resourceUuid: sample.resourceUuid,
      labels: canonicalLabels(sample.labels),
    }));

    // Cleared before the lookup, so every key of these samples is cached after it.
    if (this.#seriesIds.size + keys.length > SERIES_CACHE_LIMIT) {
      this.#seriesIds.clear();
    }

    const missing = keys.filter((key) => !this.#seriesIds.has(cacheKey(key)));

    if (missing.length > 0) {
      await this.#createSeries(tx, missing);
    }

    return keys.map((key) => this.#seriesIds.get(cacheKey(key))!);
  }

  async #createSeries(
    tx: Kysely<Database>,
    keys: { namespace: string; metricName: string; resourceUuid: string; labels: string }[],
  ) {
    const rows = JSON.stringify(
      keys.map((key) => [key.namespace, key.metricName, key.resourceUuid, key.labels]),
    );
    await tx.executeQuery(CompiledQuery.raw(INSERT_SERIES[this.#dialect], [rows]));

    // The resource narrows the lookup through its index; labels alone matched no index and
    // scanned every series, a cost that grew with each VM's series.
    const resources = JSON.stringify([...new Set(keys.map((key) => key.resourceUuid))]);
    const labels = JSON.stringify(keys.map((key) => key.labels));
    const found = await tx.executeQuery<SeriesKeyRow>(
      CompiledQuery.raw(SELECT_SERIES[this.#dialect], [resources, labels]),
    );

    for (const row of found.rows) {
      this.#seriesIds.set(cacheKey(row), Number(row.id));
    }
  }
}

function cacheKey(key: { namespace: string; metricName: string; labels: string }) {
  return `${key.namespace} ${key.metricName} ${key.labels}`;
}
