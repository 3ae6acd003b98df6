const tails = new Map<string, Promise<unknown>>();

/**
 * Runs `task` after every earlier task with the same key has settled, so two commands for the same
 * L3 network, bridge or table never interleave their host changes. Keys are per agent process.
 */
export async function serialize<T>(key: string, task: () => Promise<T>): Promise<T> {
  const previous = tails.get(key) ?? Promise.resolve();
  const current = previous.catch(() => undefined).then(task);
  const tail = current.catch(() => undefined);
  tails.set(key, tail);

  try {
    return await current;
  } finally {
    if (tails.get(key) === tail) {
      tails.delete(key);
    }
  }
}
