import { verifyRequest } from "@tstack/agent/auth";
import type { FastifyInstance } from "fastify";
import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { UUID_PATTERN } from "../core/ids.js";
import { findMetric, type Namespace, RESOURCE_LABEL } from "./catalog.js";
import type { MetricStore, StoredSample } from "./store.js";

/** Path agents push metric batches to, followed by the host UUID. */
export const INGEST_PATH = "/zstack/asyncrest/monitoring";

const MAX_SAMPLES = 50_000;
// Batches far from the server's clock would land outside the windows queries and alarms read.
const MAX_CLOCK_SKEW_MS = 10 * 60_000;
const SECRET_CACHE_MS = 60_000;
const LABEL_VALUE = /^[A-Za-z0-9._:@-]{1,64}$/;

interface PushedSample {
  namespace?: unknown;
  metricName?: unknown;
  labels?: unknown;
  value?: unknown;
}

/**
 * Checks one pushed sample against the metric catalogue and returns it ready to store, or a
 * reason to drop it. Host metrics must name the pushing host, so one agent cannot write
 * another host's series.
 */
export function checkSample(
  hostUuid: string,
  sample: PushedSample,
): StoredSample | { reason: string } {
  const definition = findMetric(String(sample.namespace), String(sample.metricName));

  if (!definition) {
    return { reason: `unknown metric ${sample.namespace} ${sample.metricName}` };
  }

  if (typeof sample.value !== "number" || !Number.isFinite(sample.value)) {
    return { reason: `invalid value of ${definition.name}` };
  }

  const labels = (sample.labels ?? {}) as Record<string, unknown>;
  const names = Object.keys(labels).sort();

  if (names.join() !== [...definition.labelNames].sort().join()) {
    return { reason: `labels ${names.join()} do not match ${definition.labelNames.join()}` };
  }

  if (!names.every((name) => typeof labels[name] === "string" && LABEL_VALUE.test(labels[name]))) {
    return { reason: `invalid label value in ${JSON.stringify(labels).slice(0, 200)}` };
  }

  const resourceUuid = labels[RESOURCE_LABEL[definition.namespace as Namespace]] as string;

  if (!UUID_PATTERN.test(resourceUuid)) {
    return { reason: `invalid resource UUID ${resourceUuid}` };
  }

  if (definition.namespace === "ZStack/Host" && resourceUuid !== hostUuid) {
    return { reason: `host metric of another host ${resourceUuid}` };
  }

  return {
    namespace: definition.namespace,
    metricName: definition.name,
    resourceUuid,
    labels: labels as Record<string, string>,
    value: sample.value,
  };
}

/**
 * Registers the route agents push signed metric batches to. The signature is checked with the
 * secret of the host the URL names, which is cached for a minute to spare a query per batch.
 * NOTE: VM and volume samples are not checked against the host the VM runs on.
 */
export function registerIngestRoute(app: FastifyInstance, core: Core, store: MetricStore) {
  const secrets = new Map<string, { secret: string; until: number }>();
  const secretOf = async (hostUuid: string) => {
    const cached = secrets.get(hostUuid);

    if (cached && cached.until > Date.now()) {
      return cached.secret;
    }

    const target = await agentTarget(core, hostUuid).catch(() => undefined);

    if (target) {
      secrets.set(hostUuid, { secret: target.secret, until: Date.now() + SECRET_CACHE_MS });
    }

    return target?.secret;
  };

  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      "*",
      { parseAs: "string", bodyLimit: 16 * 1024 * 1024 },
      (_request, body, done) => done(null, body),
    );

    scope.post<{ Params: { hostUuid: string } }>(
      `${INGEST_PATH}/:hostUuid`,
      async (request, reply) => {
        const { hostUuid } = request.params;
        const path = `${INGEST_PATH}/${hostUuid}`;
        const body = String(request.body ?? "");

        if (!UUID_PATTERN.test(hostUuid)) {
          return reply.code(400).send({ error: `invalid host UUID ${hostUuid} in the path` });
        }

        const secret = await secretOf(hostUuid);

        if (!secret || !verifyRequest(secret, "POST", path, body, request.headers).ok) {
          return reply.code(401).send({ error: "unknown host or bad signature" });
        }

        let batch: { time?: unknown; samples?: unknown };

        try {
          batch = JSON.parse(body) as { time?: unknown; samples?: unknown };
        } catch {
          return reply.code(400).send({ error: "invalid JSON body of a metric batch" });
        }
        const time = Number(batch.time);

        if (!Number.isInteger(time) || Math.abs(time - Date.now()) > MAX_CLOCK_SKEW_MS) {
          return reply.code(400).send({
            error: `invalid batch time ${batch.time}: expected epoch milliseconds within ${MAX_CLOCK_SKEW_MS / 60_000} minutes of the server clock; check the host clock`,
          });
        }

        if (!Array.isArray(batch.samples) || batch.samples.length > MAX_SAMPLES) {
          return reply
            .code(400)
            .send({ error: `invalid samples: expected at most ${MAX_SAMPLES}` });
        }

        const stored: StoredSample[] = [];
        const dropped: string[] = [];

        for (const sample of batch.samples as PushedSample[]) {
          const checked = checkSample(hostUuid, sample ?? {});

          if ("reason" in checked) {
            dropped.push(checked.reason);
          } else {
            stored.push(checked);
          }
        }

        if (dropped.length > 0) {
          core.log.warn(
            { hostUuid, dropped: dropped.length, first: dropped[0] },
            "dropped invalid metric samples",
          );
        }

        await store.insert(time, stored);
        return { stored: stored.length, dropped: dropped.length };
      },
    );
  });
}
