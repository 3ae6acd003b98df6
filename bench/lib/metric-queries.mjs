// Timing of GetMetricData queries, shared by the monitoring benchmarks.
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Runs `runs` queries one after another and returns the latency p50 and p99 in ms. */
export async function timeQueries(admin, runs, query) {
  const latencies = [];
  let points = 0;

  for (let run = 0; run < runs; run++) {
    const started = performance.now();
    const { data } = await admin.call("getMetricData", { query: query(run) });
    latencies.push(performance.now() - started);
    points = data.length;
  }

  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), points };
}
