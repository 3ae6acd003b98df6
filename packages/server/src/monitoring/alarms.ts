import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import { checkQuota, defineQuota } from "../identity/quotas.js";
import type { Caller } from "../identity/sessions.js";
import {
  changeStateHandler,
  insertResource,
  loadResource,
  queryHandler,
  simpleDeleteHandler,
  updateResource,
} from "../resources/crud.js";
import {
  commonFields,
  commonInventory,
  defineResource,
  resourceDefinition,
} from "../resources/registry.js";
import type { ApiHandlers } from "../rest/api.js";
import { findMetric, type MetricDefinition } from "./catalog.js";
import { monitoringSettings } from "./config.js";

/** A label filter of an alarm. */
export interface AlarmLabel {
  key: string;
  op: "Equal" | "NotEqual";
  value: string;
}

defineResource({
  type: "Alarm",
  table: "zwatchAlarms",
  key: "uuid",
  visibility: "owner",
  taggable: true,
  fields: {
    ...commonFields,
    namespace: "string",
    metricName: "string",
    comparisonOperator: "string",
    threshold: "number",
    period: "number",
    repeatCount: "number",
    state: "string",
    status: "string",
    lastStatusChangeDate: "date",
    accountUuid: "string",
  },
  toInventory: (row) => ({
    ...commonInventory(row),
    namespace: row.namespace,
    metricName: row.metricName,
    comparisonOperator: row.comparisonOperator,
    threshold: Number(row.threshold),
    period: Number(row.period),
    repeatCount: Number(row.repeatCount),
    labels: JSON.parse(String(row.labels)) as AlarmLabel[],
    state: row.state,
    status: row.status,
    lastStatusChangeDate: row.lastStatusChangeDate ?? null,
  }),
});

// Every enabled alarm costs one query per evaluation, so each account's alarms are bounded.
defineQuota({
  name: "alarm.num",
  defaultValue: 100,
  description: "Maximum zwatch alarms per account",
  async usage(db, accountUuid) {
    const row = await db
      .selectFrom("zwatchAlarms")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("accountUuid", "=", accountUuid)
      .executeTakeFirst();
    return Number(row?.count ?? 0);
  },
});

/** Checks the metric of an alarm; normal accounts cannot watch host metrics. */
function checkMetric(namespace: unknown, metricName: unknown, caller: Caller): MetricDefinition {
  const definition = findMetric(String(namespace), String(metricName));

  if (!definition) {
    throw new ApiError(
      "invalidArgument",
      `params.metricName: unknown metric ${JSON.stringify(metricName)} in namespace ${JSON.stringify(namespace)}; GET /zwatch/metrics/meta-data lists the metrics`,
    );
  }

  if (definition.namespace === "ZStack/Host" && !caller.isAdmin) {
    throw new ApiError(
      "permissionDenied",
      `${definition.namespace} metrics are visible to admin accounts only; account ${caller.accountUuid} is not an admin`,
    );
  }

  return definition;
}

function checkLabels(labels: unknown, definition: MetricDefinition) {
  for (const label of (labels ?? []) as AlarmLabel[]) {
    if (!definition.labelNames.includes(label.key)) {
      throw new ApiError(
        "invalidArgument",
        `params.labels: unknown label ${JSON.stringify(label.key)} of ${definition.name}; expected one of ${definition.labelNames.join(", ")}`,
      );
    }
  }
}

// A window shorter than the collection interval would often hold no sample, so the alarm would
// flap to InsufficientData.
function checkPeriod(core: Core, period: unknown) {
  const interval = monitoringSettings(core).intervalSeconds;

  if (period !== undefined && Number(period) < interval) {
    throw new ApiError(
      "invalidArgument",
      `params.period: ${period} seconds is under the collection interval of ${interval} seconds (monitoring.interval); use at least ${interval}`,
    );
  }
}

export const alarmHandlers: ApiHandlers = {
  queryAlarm: queryHandler("Alarm"),
  deleteAlarm: simpleDeleteHandler("Alarm"),
  changeAlarmState: changeStateHandler("Alarm"),
  createAlarm: {
    async check(core, call) {
      const definition = checkMetric(call.params.namespace, call.params.metricName, call.caller);
      checkLabels(call.params.labels, definition);
      checkPeriod(core, call.params.period);
    },
    run: (core, call) =>
      call.commit(async (tx) => {
        await checkQuota(
          tx,
          { uuid: call.caller.accountUuid, isAdmin: call.caller.isAdmin },
          "alarm.num",
          1,
        );
        const params = call.params;
        const row = await insertResource(
          tx,
          core,
          "Alarm",
          {
            name: params.name,
            description: params.description ?? null,
            namespace: params.namespace,
            metricName: params.metricName,
            comparisonOperator: params.comparisonOperator,
            threshold: params.threshold,
            period: params.period,
            repeatCount: params.repeatCount ?? 1,
            labels: JSON.stringify(params.labels ?? []),
            state: "Enabled",
            status: "InsufficientData",
            lastStatusChangeDate: null,
          },
          call,
        );
        return { inventory: resourceDefinition("Alarm").toInventory(row) };
      }),
  },
  updateAlarm: {
    async check(core, call) {
      const row = await loadResource(core.kysely, "Alarm", call.path.uuid!, call.caller);
      const definition = checkMetric(row.namespace, row.metricName, call.caller);
      checkLabels(call.params.labels, definition);
      checkPeriod(core, call.params.period);
    },
    run: (_core, call) =>
      call.commit(async (tx) => {
        const row = await loadResource(tx, "Alarm", call.path.uuid!, call.caller);
        const columns = [
          "name",
          "description",
          "comparisonOperator",
          "threshold",
          "period",
          "repeatCount",
        ];
        const changes: Record<string, unknown> = Object.fromEntries(
          columns
            .filter((column) => call.params[column] !== undefined)
            .map((column) => [column, call.params[column]]),
        );

        if (call.params.labels !== undefined) {
          changes.labels = JSON.stringify(call.params.labels);
        }

        return { inventory: await updateResource(tx, "Alarm", row, changes) };
      }),
  },
};
