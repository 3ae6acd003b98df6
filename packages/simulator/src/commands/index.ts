import type { Command } from "./context.js";
import { hostCommands } from "./host-commands.js";
import { networkCommands } from "./network-commands.js";
import { storageCommands } from "./storage-commands.js";
import { vmCommands } from "./vm-commands.js";

export { type Body, type Command, type CommandContext, CommandError } from "./context.js";
export { SIMULATOR_AGENT_VERSION } from "./host-commands.js";

/** Every agent command path the simulator serves, with its handler. */
export const COMMANDS: Record<string, Command> = {
  ...hostCommands,
  ...vmCommands,
  ...networkCommands,
  ...storageCommands,
};

/** Commands that reply at once and post their result to the `callbackurl` header's URL. */
export const ASYNC_PATHS = new Set([
  "/vm/start",
  "/vm/stop",
  "/vm/reboot",
  "/vm/pause",
  "/vm/resume",
  "/vm/destroy",
  "/vm/volume/attach",
  "/vm/volume/detach",
  "/imagestore/download",
  "/storage/imagecache/fill",
  "/storage/imagecache/gc",
  "/storage/snapshot/delete",
  "/vm/volume/snapshot",
]);

/** Commands served without a signature, as by the real agent. */
export const UNSIGNED_PATHS = new Set(["/host/echo"]);
