import type { Selectable } from "kysely";
import type { Core } from "../core/core.js";
import { emitEvent } from "../core/events.js";
import { now } from "../core/ids.js";
import type { AlarmLabel } from "./alarms.js";
import { type Namespace, RESOURCE_LABEL } from "./catalog.js";
import { type LabelFilter, matchesLabels } from "./query.js";
import type { AlarmTable } from "./schema.js";
import type { BucketRow, MetricStore } from "./store.js";

export type AlarmStatus = "OK" | "Alarm" | "InsufficientData";

type AlarmRow = Selectable<AlarmTable>;

const COMPARISONS: Record<string, (value: number, threshold: number) => boolean> = {
  GreaterThan: (value, threshold) => value > threshold,
  GreaterThanOrEqualTo: (value, threshold) => value >= threshold,
  LessThan: (value, threshold) => value < threshold,
  LessThanOrEqualTo: (value, threshold) => value <= threshold,
};

/** Result of evaluating one alarm: its status and the series average that decided it. */
export interface Evaluation {
  status: AlarmStatus;
  /** Average of the newest window of the deciding series, when one had data. */
  value?: number;
  labels?: Record<string, string>;
}

/**
 * Decides an alarm's status from per-window averages of each matching series, windows 0 (oldest)
 * to repeatCount - 1 (newest). A series breaches when every window has samples and each average
 * breaches the threshold. The alarm is Alarm when any series breaches, OK when some series has
 * samples in every window, and InsufficientData otherwise.
 */
export function decideStatus(
  alarm: Pick<AlarmRow, "comparisonOperator" | "threshold" | "repeatCount">,
  series: Map<number, Record<string, string>>,
  rows: BucketRow[],
): Evaluation {
  const compare = COMPARISONS[alarm.comparisonOperator]!;
  const windows = new Map<number, (number | undefined)[]>();

  for (const row of rows) {
    const averages = windows.get(row.seriesId) ?? new Array(alarm.repeatCount).fill(undefined);

    if (row.bucket >= 0 && row.bucket < alarm.repeatCount && row.sampleCount > 0) {
      averages[row.bucket] = row.total / row.sampleCount;
    }

    windows.set(row.seriesId, averages);
  }

  let complete: Evaluation | undefined;

  for (const [seriesId, averages] of windows) {
    if (averages.some((value) => value === undefined)) {
      continue;
    }

    const newest = { value: averages.at(-1), labels: series.get(seriesId) };

    if (averages.every((value) => compare(value!, Number(alarm.threshold)))) {
      return { status: "Alarm", ...newest };
    }

    complete ??= { status: "OK", ...newest };
  }

  return complete ?? { status: "InsufficientData" };
}

/**
 * Evaluates every enabled alarm on a timer and records status changes, each with a
 * `/alarm/status/change` event in the same transaction.
 */
export class AlarmEvaluator {
  readonly #core: Core;
  readonly #store: MetricStore;
  #running = false;

  constructor(core: Core, store: MetricStore) {
    this.#core = core;
    this.#store = store;
  }

  /** Evaluates all enabled alarms once; a run still going makes this call a no-op. */
  async evaluateAll(time = Date.now()) {
    if (this.#running) {
      return;
    }

    this.#running = true;

    try {
      const alarms = await this.#core.kysely
        .selectFrom("zwatchAlarms")
        .selectAll()
        .where("state", "=", "Enabled")
        .execute();

      for (const alarm of alarms) {
        await this.#evaluate(alarm, time).catch((error) =>
          this.#core.log.warn({ err: error, alarmUuid: alarm.uuid }, "alarm evaluation failed"),
        );
      }
    } finally {
      this.#running = false;
    }
  }

  async #evaluate(alarm: AlarmRow, time: number) {
    const owner = await this.#core.kysely
      .selectFrom("accounts")
      .select("type")
      .where("uuid", "=", alarm.accountUuid)
      .executeTakeFirst();
    const filters: LabelFilter[] = (JSON.parse(alarm.labels) as AlarmLabel[]).map((label) => ({
      key: label.key,
      op: label.op === "Equal" ? "=" : "!=",
      value: label.value,
    }));
    const resourceLabel = RESOURCE_LABEL[alarm.namespace as Namespace];
    const exact = filters.find((filter) => filter.key === resourceLabel && filter.op === "=");
    const series = (
      await this.#store.findSeries(alarm.namespace, alarm.metricName, {
        resourceUuid: exact?.value,
        accountUuid: owner?.type === "SystemAdmin" ? undefined : alarm.accountUuid,
      })
    ).filter((row) => matchesLabels(row.labels, filters));
    const periodMs = alarm.period * 1000;
    const origin = time - alarm.repeatCount * periodMs;
    const rows =
      series.length === 0
        ? []
        : await this.#store.buckets(
            series.map((row) => row.id),
            { startTime: origin, endTime: time, periodMs, origin },
          );
    const evaluation = decideStatus(
      alarm,
      new Map(series.map((row) => [row.id, row.labels])),
      rows,
    );

    if (evaluation.status !== alarm.status) {
      await this.#record(alarm, evaluation);
    }
  }

  async #record(alarm: AlarmRow, evaluation: Evaluation) {
    await this.#core.transact(async (tx) => {
      const result = await tx
        .updateTable("zwatchAlarms")
        .set({
          status: evaluation.status,
          lastStatusChangeDate: now(),
          version: alarm.version + 1,
        })
        .where("uuid", "=", alarm.uuid)
        .where("version", "=", alarm.version)
        .executeTakeFirst();

      // An alarm updated or deleted meanwhile is evaluated again on the next run.
      if (Number(result.numUpdatedRows) === 0) {
        return;
      }

      await emitEvent(tx, "/alarm/status/change", {
        resourceUuid: alarm.uuid,
        accountUuid: alarm.accountUuid,
        content: {
          uuid: alarm.uuid,
          name: alarm.name,
          oldStatus: alarm.status,
          newStatus: evaluation.status,
          namespace: alarm.namespace,
          metricName: alarm.metricName,
          comparisonOperator: alarm.comparisonOperator,
          threshold: Number(alarm.threshold),
          value: evaluation.value ?? null,
          labels: evaluation.labels ?? null,
        },
      });
    });
    this.#core.log.info(
      { alarmUuid: alarm.uuid, oldStatus: alarm.status, newStatus: evaluation.status },
      "alarm status changed",
    );
  }
}
