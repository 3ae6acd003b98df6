import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import type { SourceStream } from "./download.js";
import { StorageError } from "./errors.js";
import { type CheckedHttpUrl, checkUrl, redactUrl, type UrlPolicy } from "./url-policy.js";

/** Options of `openHttp`. */
export interface HttpSourceOptions extends UrlPolicy {
  idleTimeoutMs?: number;
  maxRedirects?: number;
  signal?: AbortSignal;
}

const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_REDIRECTS = 5;

/**
 * Sends a GET for a checked URL and returns the body of a 200 response. The connection goes
 * only to the addresses the policy check resolved, and each redirect is checked again.
 */
export async function openHttp(
  checked: CheckedHttpUrl,
  options: HttpSourceOptions,
): Promise<SourceStream> {
  let current = checked;

  for (let redirects = 0; ; redirects++) {
    const response = await get(current, options);
    const location = response.headers.location;

    if (response.statusCode === 200) {
      return { stream: response, totalBytes: contentLength(response) };
    }

    response.resume();
    const redacted = redactUrl(current.url);

    if (!isRedirect(response.statusCode) || location === undefined) {
      throw new StorageError(
        "DOWNLOAD_FAILED",
        `GET ${redacted} returned HTTP ${response.statusCode} ${response.statusMessage ?? ""}`.trim(),
      );
    }

    if (redirects >= (options.maxRedirects ?? DEFAULT_MAX_REDIRECTS)) {
      throw new StorageError("DOWNLOAD_FAILED", `GET ${redacted} redirected too many times`);
    }

    current = await checkRedirect(new URL(location, current.url), options);
  }
}

function get(checked: CheckedHttpUrl, options: HttpSourceOptions) {
  const client = checked.url.protocol === "https:" ? https : http;
  const timeout = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;

  return new Promise<IncomingMessage>((resolve, reject) => {
    let response: IncomingMessage | undefined;
    const lookup = pinnedLookup(checked.addresses);
    const request = client.get(checked.url, { lookup, signal: options.signal }, (received) => {
      response = received;
      resolve(received);
    });

    // The idle timer also covers the body, so a server that stalls mid-transfer fails too. The
    // response is destroyed first so its reader gets this reason, not a bare "aborted".
    request.setTimeout(timeout, () => {
      const error = new Error(`no data from ${redactUrl(checked.url)} for ${timeout} ms`);
      response?.destroy(error);
      request.destroy(error);
    });
    request.on("error", reject);
  });
}

async function checkRedirect(target: URL, policy: UrlPolicy) {
  // A redirect must not reach local files, whatever the policy allows for the first URL.
  const checked = await checkUrl(target.href, { ...policy, allowedFilePrefixes: [] });

  if (checked.kind !== "http") {
    throw new StorageError("URL_NOT_ALLOWED", `redirect to ${redactUrl(target)} is not allowed`);
  }

  return checked;
}

function pinnedLookup(addresses: CheckedHttpUrl["addresses"]): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all) {
      callback(null, addresses);
      return;
    }

    const first = addresses[0]!;
    callback(null, first.address, first.family);
  };
}

function contentLength(response: IncomingMessage) {
  const header = response.headers["content-length"];
  const length = header === undefined ? Number.NaN : Number(header);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

function isRedirect(status: number | undefined) {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}
