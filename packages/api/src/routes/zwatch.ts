import { Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, Strict } from "../common.js";
import * as Inventory from "../inventories.js";
import { type ApiRoute, crud } from "./declare.js";

const ComparisonOperator = Type.Union(
  ["GreaterThan", "GreaterThanOrEqualTo", "LessThan", "LessThanOrEqualTo"].map((name) =>
    Type.Literal(name),
  ),
);

const AlarmLabel = Strict({
  key: Type.String({ minLength: 1, maxLength: 64 }),
  op: Type.Union([Type.Literal("Equal"), Type.Literal("NotEqual")]),
  value: Type.String({ minLength: 1, maxLength: 64 }),
});

const AlarmRule = {
  comparisonOperator: ComparisonOperator,
  threshold: Type.Number(),
  period: Type.Integer({ minimum: 1, maximum: 86_400, description: "seconds each window spans" }),
  repeatCount: Type.Integer({
    minimum: 1,
    maximum: 100,
    description: "consecutive windows that must breach the threshold",
  }),
  labels: Type.Array(AlarmLabel, { maxItems: 16 }),
};

/** Metric queries and alarms, at ZStack's zwatch paths. */
export const zwatchRoutes = [
  {
    name: "getMetricData",
    method: "GET",
    path: "/zwatch/metrics",
    kind: "sync",
    summary:
      "Time series of one metric: namespace, metricName, labels (KEY=VALUE, repeatable), startTime and endTime (epoch seconds), period (seconds), aggregate (avg, min, max, sum), groupBy (label names)",
  },
  {
    name: "getMetricMetadata",
    method: "GET",
    path: "/zwatch/metrics/meta-data",
    kind: "sync",
    summary: "List the metrics of each namespace with their units and label names",
  },
  ...crud({
    resource: "Alarm",
    api: "Alarm",
    path: "/zwatch/alarms",
    inventory: Inventory.AlarmInventory,
    changeState: true,
    create: Strict({
      name: Name,
      description: Type.Optional(Description),
      namespace: Type.String({ minLength: 1, maxLength: 32 }),
      metricName: Type.String({ minLength: 1, maxLength: 64 }),
      comparisonOperator: AlarmRule.comparisonOperator,
      threshold: AlarmRule.threshold,
      period: AlarmRule.period,
      repeatCount: Type.Optional(AlarmRule.repeatCount),
      labels: Type.Optional(AlarmRule.labels),
      ...CreateCommon,
    }),
    update: Strict({
      name: Type.Optional(Name),
      description: Type.Optional(Description),
      comparisonOperator: Type.Optional(AlarmRule.comparisonOperator),
      threshold: Type.Optional(AlarmRule.threshold),
      period: Type.Optional(AlarmRule.period),
      repeatCount: Type.Optional(AlarmRule.repeatCount),
      labels: Type.Optional(AlarmRule.labels),
    }),
  }),
] as const satisfies readonly ApiRoute[];
