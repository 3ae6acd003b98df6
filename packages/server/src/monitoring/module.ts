import type { FastifyInstance } from "fastify";
import type { Core } from "../core/core.js";
import { Rounds } from "../core/rounds.js";
import type { Module } from "../modules.js";
import { AgentConfigurator } from "./agent-config.js";
import { alarmHandlers } from "./alarms.js";
import { CATEGORY, defineMonitoringConfig, monitoringSettings } from "./config.js";
import { AlarmEvaluator } from "./evaluator.js";
import { registerIngestRoute } from "./ingest.js";
import { getMetricData, metricMetadata, parseMetricQuery } from "./query.js";
import { MetricStore } from "./store.js";

const SWEEP_INTERVAL_MS = 60_000;
const RECONCILE_INTERVAL_MS = 30_000;

/** Starts `work` in rounds `intervalMs()` apart and returns a function that stops them. */
function repeat(core: Core, name: string, work: () => Promise<void>, intervalMs: () => number) {
  const rounds = new Rounds(intervalMs, work, core.log, name);
  rounds.start();
  return () => rounds.stop();
}

/**
 * Monitoring: agents push metric batches, the store keeps a bounded history, GetMetricData
 * queries it, and alarms are evaluated on a timer.
 */
export function monitoringModule(): Module {
  let core: Core | undefined;
  let store: MetricStore | undefined;
  let evaluator: AlarmEvaluator | undefined;
  let configurator: AgentConfigurator | undefined;
  const stops: (() => void | Promise<void>)[] = [];

  const sweep = async () => {
    const settings = monitoringSettings(core!);
    const time = Date.now();

    await store!.sweep(
      time - settings.rawRetentionMs,
      time - settings.retentionMs,
      settings.rollupStepMs,
    );
  };

  return {
    handlers: {
      ...alarmHandlers,
      getMetricData: {
        async run(registered, call) {
          const settings = monitoringSettings(registered);
          const query = parseMetricQuery(call.query, {
            intervalSeconds: settings.intervalSeconds,
            retentionMs: settings.retentionMs,
            now: Date.now(),
          });
          return { data: await getMetricData(store!, query, call.caller) };
        },
      },
      getMetricMetadata: {
        async run(_core, call) {
          const namespace = call.query.namespace;
          return { metrics: metricMetadata(Array.isArray(namespace) ? namespace[0] : namespace) };
        },
      },
    },
    register(registered) {
      core = registered;
      store = new MetricStore(registered.kysely, registered.db.dialect);
      evaluator = new AlarmEvaluator(registered, store);
      configurator = new AgentConfigurator(registered);
      defineMonitoringConfig(registered);
    },
    routes(app: FastifyInstance) {
      registerIngestRoute(app, core!, store!);
    },
    start() {
      const registered = core!;
      const configure = async (message: { body: unknown }) => {
        const { hostUuid } = message.body as { hostUuid: string };
        await configurator!
          .configure(hostUuid)
          .catch((error) =>
            registered.log.warn({ err: error, hostUuid }, "configuring host monitoring failed"),
          );
      };

      stops.push(registered.bus.subscribe("host.connected", configure));
      registered.config.onChange(CATEGORY, "interval", () => {
        configurator!
          .reconcile()
          .catch((error) => registered.log.warn({ err: error }, "pushing the interval failed"));
      });
      stops.push(
        repeat(
          registered,
          "monitoring config reconcile",
          () => configurator!.reconcile(),
          () => RECONCILE_INTERVAL_MS,
        ),
      );
      stops.push(
        repeat(
          registered,
          "alarm evaluation",
          () => evaluator!.evaluateAll(),
          () => monitoringSettings(registered).evaluationIntervalMs,
        ),
      );
      stops.push(repeat(registered, "metric history sweep", sweep, () => SWEEP_INTERVAL_MS));
    },
    async stop() {
      await Promise.all(stops.splice(0).map((stop) => stop()));
    },
  };
}
