import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { CliError } from "./errors.js";

/** The endpoint and session that `tstack login` saves between runs. */
export interface CliConfig {
  endpoint: string;
  session?: string;
  accountName?: string;
  userName?: string;
  /** Expiry the server returned at login; each later call moves it forward. */
  expiredDate?: string;
}

/** Returns the config file path: `TSTACK_CONFIG`, else `$XDG_CONFIG_HOME/tstack/config.json`, else `~/.config/...`. */
export function configPath() {
  if (process.env.TSTACK_CONFIG) {
    return process.env.TSTACK_CONFIG;
  }

  const base = process.env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "tstack", "config.json");
}

/** Reads the config file; a missing file is an empty config. */
export function readConfig(): Partial<CliConfig> {
  const path = configPath();
  let text: string;

  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return {};
    }

    throw new CliError(`failed to read ${path}: ${(error as Error).message}`);
  }

  try {
    return JSON.parse(text) as Partial<CliConfig>;
  } catch {
    throw new CliError(
      `invalid JSON in ${path}`,
      `fix or delete the file, then run 'tstack login'`,
    );
  }
}

/** Writes the config with mode 0600, because the session in it acts as a password. */
export function writeConfig(config: CliConfig) {
  const path = configPath();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  // writeFileSync applies the mode only when it creates the file.
  chmodSync(path, 0o600);
}
