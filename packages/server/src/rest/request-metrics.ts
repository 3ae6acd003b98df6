import type { Metric, Registry } from "prom-client";

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

type Labels = Record<string, string>;

interface Latency {
  labels: Labels;
  /** Observations per bucket, not cumulative. The last slot counts those above every bound. */
  buckets: number[];
  sum: number;
  count: number;
}

interface Series {
  labels: Labels;
  requests: number;
  latency: Latency;
}

/** The values prom-client's registry reads from a metric at scrape time. */
interface MetricValues {
  name: string;
  help: string;
  type: "counter" | "histogram";
  aggregator: "sum";
  values: Array<{ labels: Labels; value: number; metricName?: string }>;
}

/**
 * HTTP request counts and latencies, kept in plain maps and handed to prom-client only when
 * `/metrics` is scraped. prom-client 15 hashes the label values on every `inc` and `observe`,
 * which cost about 3 µs per request in a CPU profile of the rest-core bench. The exposition
 * format is the one prom-client's own Counter and Histogram produce.
 */
export class RequestMetrics {
  /** Every series in the order of its first request, for the exposition. */
  private readonly series: Series[] = [];
  private readonly seriesByRoute = new Map<string, Map<string, Map<number, Series>>>();
  private readonly latencies = new Map<string, Latency>();

  constructor(registry: Registry) {
    const metrics = [
      this.metric("tstack_http_requests_total", "HTTP requests by route and status", () =>
        this.counterValues(() => true),
      ),
      this.metric(
        "tstack_http_errors_total",
        "HTTP requests answered with a 4xx or 5xx status",
        () => this.counterValues((labels) => Number(labels.status) >= 400),
      ),
      this.metric(
        "tstack_http_request_duration_seconds",
        "HTTP request latency by route",
        () => this.histogramValues(),
        "histogram",
      ),
    ];

    for (const metric of metrics) {
      registry.registerMetric(metric as unknown as Metric);
    }
  }

  /** Counts one finished request and observes its latency in seconds. */
  record(method: string, route: string, status: number, seconds: number) {
    const series = this.seriesOf(method, route, status);
    series.requests++;
    const latency = series.latency;
    let bucket = 0;

    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]!) {
      bucket++;
    }

    latency.buckets[bucket]!++;
    latency.sum += seconds;
    latency.count++;
  }

  /**
   * Returns the series of one route, method and status, creating it on first use. The lookup goes
   * through nested maps, because a key concatenated per request is a new string that V8 hashes
   * again on every lookup, while route and method strings repeat and keep their hash.
   */
  private seriesOf(method: string, route: string, status: number) {
    let byMethod = this.seriesByRoute.get(route);

    if (!byMethod) {
      byMethod = new Map();
      this.seriesByRoute.set(route, byMethod);
    }

    let byStatus = byMethod.get(method);

    if (!byStatus) {
      byStatus = new Map();
      byMethod.set(method, byStatus);
    }

    let series = byStatus.get(status);

    if (!series) {
      series = {
        labels: { method, route, status: String(status) },
        requests: 0,
        latency: this.latency(method, route),
      };
      byStatus.set(status, series);
      this.series.push(series);
    }

    return series;
  }

  private latency(method: string, route: string) {
    const key = `${method} ${route}`;
    let latency = this.latencies.get(key);

    if (!latency) {
      latency = {
        labels: { method, route },
        buckets: new Array(LATENCY_BUCKETS.length + 1).fill(0),
        sum: 0,
        count: 0,
      };
      this.latencies.set(key, latency);
    }

    return latency;
  }

  private metric(
    name: string,
    help: string,
    values: () => MetricValues["values"],
    type: MetricValues["type"] = "counter",
  ) {
    return {
      name,
      help,
      type,
      aggregator: "sum",
      get: async (): Promise<MetricValues> => ({
        name,
        help,
        type,
        aggregator: "sum",
        values: values(),
      }),
      reset: () => this.reset(),
    };
  }

  private counterValues(include: (labels: Labels) => boolean) {
    return this.series
      .filter((series) => include(series.labels))
      .map((series) => ({ labels: series.labels, value: series.requests }));
  }

  private histogramValues() {
    const values: MetricValues["values"] = [];
    const name = "tstack_http_request_duration_seconds";

    for (const latency of this.latencies.values()) {
      let cumulative = 0;

      for (const [index, bound] of LATENCY_BUCKETS.entries()) {
        cumulative += latency.buckets[index]!;
        values.push({
          labels: { le: String(bound), ...latency.labels },
          value: cumulative,
          metricName: `${name}_bucket`,
        });
      }

      values.push(
        {
          labels: { le: "+Inf", ...latency.labels },
          value: latency.count,
          metricName: `${name}_bucket`,
        },
        { labels: latency.labels, value: latency.sum, metricName: `${name}_sum` },
        { labels: latency.labels, value: latency.count, metricName: `${name}_count` },
      );
    }

    return values;
  }

  private reset() {
    this.series.length = 0;
    this.seriesByRoute.clear();
    this.latencies.clear();
  }
}
