import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { signRequest } from "../auth.js";

/** Options of a signed POST to the management node. */
export interface SignedPostOptions {
  secret: string;
  /** Extra headers such as `taskuuid` or `commandpath`. */
  headers: Record<string, string>;
  logger: Logger;
  /** Attempts before giving up; 5 by default. */
  attempts?: number;
  /** Delay before the first retry in ms, doubled for each later one; 500 by default. */
  backoffMs?: number;
}

const ATTEMPT_TIMEOUT_MS = 10_000;

/**
 * POSTs a JSON body signed with the host secret, retrying with exponential backoff on network
 * errors and non-2xx responses. Returns whether the management node accepted it.
 */
export async function postSigned(url: string, body: unknown, options: SignedPostOptions) {
  const text = JSON.stringify(body);
  const target = new URL(url);
  const attempts = options.attempts ?? 5;
  let delay = options.backoffMs ?? 500;

  for (let attempt = 1; attempt <= attempts; attempt++) {
    const signature = signRequest(options.secret, "POST", target.pathname + target.search, text);

    try {
      const response = await fetch(target, {
        method: "POST",
        headers: { "content-type": "application/json", ...options.headers, ...signature },
        body: text,
        signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
      });
      await response.arrayBuffer();

      if (response.ok) {
        return true;
      }

      options.logger.warn(
        { url, status: response.status, attempt },
        "POST to management node rejected",
      );
    } catch (error) {
      options.logger.warn({ url, err: error, attempt }, "POST to management node failed");
    }

    if (attempt < attempts) {
      await sleep(delay);
      delay *= 2;
    }
  }

  options.logger.error({ url, attempts }, "gave up POSTing to management node");
  return false;
}
