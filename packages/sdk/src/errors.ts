import type { ErrorBody } from "@tstack/api";

/** An error the API returned, with ZStack's code, description, details and elaboration. */
export class ApiRequestError extends Error {
  readonly code: string;
  readonly description: string;
  readonly details: string;
  readonly elaboration?: string;

  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(`${body.code}: ${body.details}`);
    this.name = "ApiRequestError";
    this.code = body.code;
    this.description = body.description;
    this.details = body.details;
    this.elaboration = body.elaboration;
  }
}

/** A request that got no response: connection refused or reset, after every retry. */
export class ConnectionError extends Error {
  constructor(
    readonly url: string,
    cause: unknown,
  ) {
    super(`failed to reach ${url}: ${describeCause(cause)}`, { cause });
    this.name = "ConnectionError";
  }
}

/** Throws the body's error, if the status or the body carries one; returns the body otherwise. */
export function checked(status: number, body: unknown) {
  const error = (body as { error?: ErrorBody }).error;

  if (status >= 400 || error) {
    const fallback = {
      code: `HTTP.${status}`,
      description: "HTTP error",
      details: (body as { text?: string }).text ?? JSON.stringify(body),
    };
    throw new ApiRequestError(status, error ?? fallback);
  }

  return body;
}

/** Returns whether a fetch failure is the network's (worth a retry) rather than an abort by the caller. */
export function isNetworkFailure(error: unknown) {
  return error instanceof TypeError && (error as { name: string }).name !== "AbortError";
}

function describeCause(cause: unknown): string {
  const inner = (cause as { cause?: { code?: string; message?: string } }).cause;

  if (inner?.code || inner?.message) {
    return [inner.code, inner.message].filter(Boolean).join(" ");
  }

  return cause instanceof Error ? cause.message : String(cause);
}
