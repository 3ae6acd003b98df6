import { createHash, createHmac, timingSafeEqual } from "node:crypto";

/** Header carrying the signing time in Unix milliseconds. */
export const TIMESTAMP_HEADER = "x-tstack-timestamp";

/** Header carrying the hex HMAC-SHA256 request signature. */
export const SIGNATURE_HEADER = "x-tstack-signature";

/** Maximum clock difference between signer and verifier, in milliseconds. */
export const MAX_SKEW_MS = 300_000;

/** Headers that a signed request carries, with their canonical spelling. */
export interface SignatureHeaders {
  "X-Tstack-Timestamp": string;
  "X-Tstack-Signature": string;
}

/** Result of checking a signed request; `reason` explains a rejection. */
export type VerifyResult = { ok: true } | { ok: false; reason: string };

/**
 * Signs one HTTP request with the per-host secret. Both the management node and the agent use
 * this, so each side proves it has the secret that was written at deploy time.
 */
export function signRequest(
  secret: string,
  method: string,
  path: string,
  body: string | Buffer,
  now = Date.now(),
): SignatureHeaders {
  const timestamp = String(Math.trunc(now));

  return {
    "X-Tstack-Timestamp": timestamp,
    "X-Tstack-Signature": computeSignature(secret, method, path, timestamp, body),
  };
}

/**
 * Checks the signature headers of a request. Header names are matched without regard to case,
 * so both Node's lower-cased `IncomingHttpHeaders` and `SignatureHeaders` work.
 */
export function verifyRequest(
  secret: string,
  method: string,
  path: string,
  body: string | Buffer,
  headers: Record<string, string | string[] | undefined>,
  now = Date.now(),
): VerifyResult {
  const timestamp = headerValue(headers, TIMESTAMP_HEADER);
  const signature = headerValue(headers, SIGNATURE_HEADER);

  if (timestamp === undefined || signature === undefined) {
    return { ok: false, reason: "missing X-Tstack-Timestamp or X-Tstack-Signature header" };
  }

  if (!/^\d{1,16}$/.test(timestamp)) {
    return { ok: false, reason: `invalid X-Tstack-Timestamp ${JSON.stringify(timestamp)}` };
  }

  if (Math.abs(now - Number(timestamp)) > MAX_SKEW_MS) {
    return { ok: false, reason: "X-Tstack-Timestamp is more than 300 s from the receiver's clock" };
  }

  const expected = Buffer.from(computeSignature(secret, method, path, timestamp, body), "hex");
  const received = /^[0-9a-f]{64}$/i.test(signature)
    ? Buffer.from(signature, "hex")
    : Buffer.alloc(0);

  if (received.length !== expected.length || !timingSafeEqual(received, expected)) {
    return { ok: false, reason: "invalid X-Tstack-Signature" };
  }

  return { ok: true };
}

function computeSignature(
  secret: string,
  method: string,
  path: string,
  timestamp: string,
  body: string | Buffer,
) {
  const bodyHash = createHash("sha256").update(body).digest("hex");
  const text = `${method.toUpperCase()}\n${path}\n${timestamp}\n${bodyHash}`;

  return createHmac("sha256", secret).update(text).digest("hex");
}

function headerValue(headers: Record<string, string | string[] | undefined>, name: string) {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) {
      return Array.isArray(value) ? value[0] : value;
    }
  }

  return undefined;
}
