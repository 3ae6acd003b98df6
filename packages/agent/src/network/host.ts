import type { Logger } from "pino";
import { CommandError, type RunOptions, run } from "../exec.js";
import { validateNamespacePrefix } from "./names.js";

/**
 * The host whose networking the functions in this directory change. On a real host `netns` is
 * unset, while tests set it to a network namespace that acts as a whole host.
 */
export interface NetworkHost {
  /** Network namespace that acts as the host's root namespace, or undefined for the real one. */
  netns?: string;
  /** Prefix of the per-L3 DHCP namespaces this host creates, for example `tstack-`. */
  namespacePrefix: string;
  /**
   * Directory for dnsmasq configuration, leases, metadata and rule state, owned by the agent.
   * Its path must be traversable by others (mode 0755 directories), because dnsmasq drops root
   * and rereads its hosts file as an unprivileged user.
   */
  stateDir: string;
  /** Compiled metadata server script; defaults to `metadata-server.js` beside this module. */
  metadataServerScript?: string;
  logger: Logger;
}

/** Runs a host tool in the host's namespace. */
export function hostRun(
  host: NetworkHost,
  command: string,
  args: readonly string[],
  options?: RunOptions,
) {
  if (host.netns === undefined) {
    return run(command, args, options);
  }

  return run("ip", ["netns", "exec", host.netns, command, ...args], options);
}

/** Runs a host tool inside another network namespace, such as an L3 network's DHCP namespace. */
export function namespaceRun(
  netns: string,
  command: string,
  args: readonly string[],
  options?: RunOptions,
) {
  return run("ip", ["netns", "exec", netns, command, ...args], options);
}

/** Runs `ip` with JSON output in the host's namespace and parses the result. */
export async function ipJson<T>(host: NetworkHost, args: readonly string[]): Promise<T[]> {
  const { stdout } = await hostRun(host, "ip", ["-j", ...args]);
  const text = stdout.trim();
  return text === "" ? [] : (JSON.parse(text) as T[]);
}

/** Returns whether a link exists in the host's namespace. */
export async function linkExists(host: NetworkHost, name: string): Promise<boolean> {
  try {
    await hostRun(host, "ip", ["link", "show", "dev", name]);
    return true;
  } catch (error) {
    if (error instanceof CommandError && /does not exist/.test(error.stderr)) {
      return false;
    }

    throw error;
  }
}

/** Deletes a link in the host's namespace; a link that is already gone counts as deleted. */
export async function deleteLink(host: NetworkHost, name: string): Promise<void> {
  if (await linkExists(host, name)) {
    await hostRun(host, "ip", ["link", "delete", "dev", name]);
  }
}

/** Lists the network namespaces by name. */
export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await run("ip", ["-j", "netns", "list"]);
  const text = stdout.trim();
  const entries = text === "" ? [] : (JSON.parse(text) as { name: string }[]);
  return entries.map((entry) => entry.name);
}

/** Checks the host description once, so later commands can trust its prefix. */
export function validateHost(host: NetworkHost): NetworkHost {
  validateNamespacePrefix(host.namespacePrefix);
  return host;
}

/**
 * Undo steps of a multi-step host change. Each step registers its undo right after it succeeds.
 * `rollback` runs them newest first. It logs undo failures instead of raising them, so the
 * original error stays the one reported.
 */
export class Reverter {
  private readonly undos: { description: string; undo: () => Promise<unknown> }[] = [];

  constructor(private readonly logger: Logger) {}

  add(description: string, undo: () => Promise<unknown>): void {
    this.undos.push({ description, undo });
  }

  async rollback(): Promise<void> {
    for (const { description, undo } of this.undos.reverse()) {
      try {
        await undo();
      } catch (err) {
        this.logger.error({ err, step: description }, "rollback step failed");
      }
    }

    this.undos.length = 0;
  }

  /** Runs `change`; when it throws, rolls back the registered steps and raises the error. */
  static async run<T>(logger: Logger, change: (reverter: Reverter) => Promise<T>): Promise<T> {
    const reverter = new Reverter(logger);

    try {
      return await change(reverter);
    } catch (error) {
      await reverter.rollback();
      throw error;
    }
  }
}
