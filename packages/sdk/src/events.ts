import { ApiRequestError, checked, isNetworkFailure } from "./errors.js";
import { readBody, sleep } from "./http.js";

/** A canonical event as `GET /zstack/v1/events` streams it. */
export interface CanonicalEvent {
  id: number;
  /** Event path such as `/zone/state/change`. */
  path: string;
  resourceUuid: string | null;
  accountUuid: string | null;
  content: unknown;
  createDate: string;
}

export interface EventStreamOptions {
  /** Replays the events after this id before live ones; later reconnects use the last seen id. */
  lastEventId?: number;
  /** Only events whose path starts with this prefix, such as `/zone/`. */
  path?: string;
  /** Milliseconds to wait before reconnecting after the stream drops; 1000 by default. */
  reconnectDelayMs?: number;
  signal?: AbortSignal;
}

interface StreamSource {
  endpoint: string;
  headers(): Record<string, string>;
}

/**
 * Follows the server-sent event stream. When the connection drops it reconnects with
 * `Last-Event-ID`, so no event is lost or repeated while the server still keeps it
 * (`eventStream.retention`). Ends when the signal aborts; HTTP errors such as an expired
 * session are thrown as `ApiRequestError`.
 */
export async function* followEvents(
  source: StreamSource,
  options: EventStreamOptions = {},
): AsyncGenerator<CanonicalEvent> {
  let lastEventId = options.lastEventId;

  while (!options.signal?.aborted) {
    try {
      for await (const event of readStream(source, lastEventId, options)) {
        lastEventId = event.id;
        yield event;
      }
    } catch (error) {
      if (options.signal?.aborted) {
        return;
      }

      if (error instanceof ApiRequestError || !isRetryable(error)) {
        throw error;
      }
    }

    try {
      await sleep(options.reconnectDelayMs ?? 1000, options.signal);
    } catch {
      return;
    }
  }
}

async function* readStream(
  source: StreamSource,
  lastEventId: number | undefined,
  options: EventStreamOptions,
): AsyncGenerator<CanonicalEvent> {
  const url = new URL(`${source.endpoint}/zstack/v1/events`);

  if (options.path) {
    url.searchParams.set("path", options.path);
  }

  const headers: Record<string, string> = { ...source.headers(), accept: "text/event-stream" };

  if (lastEventId !== undefined) {
    headers["last-event-id"] = String(lastEventId);
  }

  // Closing the connection when the consumer stops, not only when its signal aborts, because the
  // server keeps the stream open until the client goes away.
  const connection = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, connection.signal])
    : connection.signal;

  try {
    const response = await fetch(url, { headers, signal });

    if (response.status !== 200 || !response.body) {
      checked(response.status >= 400 ? response.status : 502, await readBody(response));
    }

    yield* parseEvents(response.body!.pipeThrough(new TextDecoderStream()));
  } finally {
    connection.abort();
  }
}

/** Parses `text/event-stream` frames; comments (heartbeats) and frames without data are skipped. */
export async function* parseEvents(chunks: AsyncIterable<string>): AsyncGenerator<CanonicalEvent> {
  let buffer = "";

  for await (const chunk of chunks) {
    buffer += chunk.replace(/\r\n?/g, "\n");
    let end = buffer.indexOf("\n\n");

    while (end >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");

      if (data) {
        yield JSON.parse(data) as CanonicalEvent;
      }

      end = buffer.indexOf("\n\n");
    }
  }
}

function isRetryable(error: unknown) {
  // A stream cut mid-body surfaces as a TypeError ("terminated") from the body reader.
  return isNetworkFailure(error) || (error as { name?: string }).name === "SocketError";
}
