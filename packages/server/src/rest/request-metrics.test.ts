import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { RequestMetrics } from "./request-metrics.js";

const observations: Array<[string, string, number, number]> = [
  ["GET", "/zstack/v1/zones/:uuid", 200, 0.0004],
  ["GET", "/zstack/v1/zones/:uuid", 200, 0.003],
  ["POST", "/zstack/v1/zones", 202, 0.02],
  ["GET", "/zstack/v1/zones/:uuid", 404, 0.0025],
  ["PUT", "/zstack/v1/zones/:uuid/actions", 500, 7],
  ["GET", "/zstack/v1/zones/:uuid", 200, 0.1],
];

/** Renders the same metrics with prom-client's own Counter and Histogram. */
async function promClientExposition() {
  const registry = new Registry();
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

  for (const [method, route, status, seconds] of observations) {
    requests.inc({ method, route, status: String(status) });

    if (status >= 400) {
      errors.inc({ method, route, status: String(status) });
    }

    latency.observe({ method, route }, seconds);
  }

  return registry.metrics();
}

describe("RequestMetrics", () => {
  it("renders what prom-client renders", async () => {
    const registry = new Registry();
    const metrics = new RequestMetrics(registry);

    for (const [method, route, status, seconds] of observations) {
      metrics.record(method, route, status, seconds);
    }

    expect(await registry.metrics()).toBe(await promClientExposition());
  });

  it("starts over after a registry reset", async () => {
    const registry = new Registry();
    const metrics = new RequestMetrics(registry);
    metrics.record("GET", "/zstack/v1/zones", 200, 0.001);
    registry.resetMetrics();

    expect(await registry.metrics()).not.toContain('route="/zstack/v1/zones"');
  });
});
