import { collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { RequestMetrics } from "./request-metrics.js";

/** The management node's Prometheus metrics. */
export interface Metrics {
  registry: Registry;
  workflowDuration: Histogram<"workflow" | "outcome">;
  /** Counts one finished HTTP request and observes its latency. Statuses of 400 and up also count as errors. */
  recordRequest(method: string, route: string, status: number, seconds: number): void;
}

/** Creates the metrics; `gauges` are read at scrape time. */
export function createMetrics(gauges: {
  runningJobs(): Promise<number>;
  queueDepth(): number;
}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "tstack_server_" });

  const requests = new RequestMetrics(registry);
  const workflowDuration = new Histogram({
    name: "tstack_workflow_duration_seconds",
    help: "Workflow run time by name and outcome",
    labelNames: ["workflow", "outcome"],
    registers: [registry],
  });

  new Gauge({
    name: "tstack_api_jobs_running",
    help: "Async API jobs in the Running state",
    registers: [registry],
    async collect() {
      this.set(await gauges.runningJobs());
    },
  });
  new Gauge({
    name: "tstack_task_queue_depth",
    help: "Tasks running or waiting in the keyed task queues",
    registers: [registry],
    collect() {
      this.set(gauges.queueDepth());
    },
  });

  return {
    registry,
    workflowDuration,
    recordRequest: (method, route, status, seconds) =>
      requests.record(method, route, status, seconds),
  };
}
