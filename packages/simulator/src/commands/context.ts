import type { SimHost, SimImage, SimPrimaryFiles, SimStorage } from "../state.js";

/** The host or backup storage a command was sent to, with the lookups commands share. */
export interface CommandContext {
  host?: SimHost;
  backupStorage?: SimStorage;
  /** Files under a primary storage path: a registered storage's, or else local to the host. */
  primaryFiles(root: string): SimPrimaryFiles;
  /** Capacity of the storage behind a path, in bytes. */
  primaryCapacity(root: string): { total: number; available: number };
  /** An image stored on any simulated backup storage. */
  findImage(imageUuid: string): SimImage | undefined;
  /** Shared-mount-point markers: marker uuid to token. */
  markers: Map<string, string>;
}

/** Body of a command as parsed JSON. */
export type Body = Record<string, unknown>;

/** One command path's handler; returns the reply fields besides `success`. */
export type Command = (context: CommandContext, body: Body) => object;

/** A command that the simulated agent rejects, like a real agent's failure reply. */
export class CommandError extends Error {
  override name = "CommandError";
}

/** Returns the host a command was sent to, or throws when it went to a storage. */
export function hostOf(context: CommandContext, path: string): SimHost {
  if (!context.host) {
    throw new CommandError(`${path} is a host command, but it was sent to a backup storage`);
  }

  return context.host;
}

/** Reads a string field of a body or throws a CommandError naming it. */
export function field(body: Body, name: string): string {
  const value = body[name];

  if (typeof value !== "string" || value.length === 0) {
    throw new CommandError(`invalid ${name} ${JSON.stringify(value)}: expected a non-empty string`);
  }

  return value;
}
