/** Polls `read` until `accept` takes its value, or fails after `timeoutMs` with the last value. */
export async function until<T>(
  read: () => Promise<T>,
  accept: (value: T) => boolean,
  what: string,
  timeoutMs: number,
) {
  const deadline = Date.now() + timeoutMs;
  let value = await read();

  while (!accept(value)) {
    if (Date.now() > deadline) {
      throw new Error(
        `${what} did not happen within ${timeoutMs} ms; last value: ${JSON.stringify(value).slice(0, 2000)}`,
      );
    }

    await new Promise((resolve) => setTimeout(resolve, 250));
    value = await read();
  }

  return value;
}
