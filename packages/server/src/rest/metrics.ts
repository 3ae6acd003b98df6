import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** The management node's Prometheus metrics. */
export interface Metrics {
  registry: Registry;
  requests: Counter<"method" | "route" | "status">;
  errors: Counter<"method" | "route" | "status">;
  latency: Histogram<"method" | "route">;
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

  const requests = new Counter({
    name: "tstack_http_requests_total",
    help: "HTTP requests by route and status",
    labelNames: ["method", "route", "status"],
    registers: [registry],
  });
  const errors = new Counter({
    name: "tstack_http_errors_total",
    help: "HTTP requests answered with a 4xx or 5xx status",
    labelNames: ["method", "route", "status"],
    registers: [registry],
  });
  const latency = new Histogram({
    name: "tstack_http_request_duration_seconds",
    help: "HTTP request latency by route",
    labelNames: ["method", "route"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
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
    requests,
    errors,
    latency,
    workflowDuration,
    recordRequest: requestRecorder(requests, errors, latency),
  };
}

/**
 * Builds `recordRequest`. It keeps the labelled child of each metric per method, route and
 * status, so a request builds no label objects. prom-client 15 still hashes the labels of a
 * child on every call.
 */
function requestRecorder(
  requests: Metrics["requests"],
  errors: Metrics["errors"],
  latency: Metrics["latency"],
) {
  const children = new Map<
    string,
    {
      requests: { inc(): void };
      errors?: { inc(): void };
      latency: { observe(value: number): void };
    }
  >();

  return (method: string, route: string, status: number, seconds: number) => {
    const key = `${method} ${status} ${route}`;
    let child = children.get(key);

    if (!child) {
      const code = String(status);
      child = {
        requests: requests.labels(method, route, code),
        errors: status >= 400 ? errors.labels(method, route, code) : undefined,
        latency: latency.labels(method, route),
      };
      children.set(key, child);
    }

    child.requests.inc();
    child.errors?.inc();
    child.latency.observe(seconds);
  };
}
