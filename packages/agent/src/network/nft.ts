import { hostRun, type NetworkHost } from "./host.js";

/** nftables address families this agent uses. */
export type NftFamily = "bridge" | "inet";

const TABLE_NAME_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;

/** Checks an nftables table name built from validated parts. */
export function validateTableName(name: string): string {
  if (!TABLE_NAME_PATTERN.test(name)) {
    throw new Error(`invalid nftables table name ${JSON.stringify(name)}`);
  }

  return name;
}

/**
 * Returns script lines that replace a table in one transaction: declaring it first makes the
 * delete valid when the table does not exist yet, so no packet ever meets a half-built table.
 */
export function replaceTableScript(family: NftFamily, name: string, body: string): string {
  validateTableName(name);
  return `table ${family} ${name} {}\ndelete table ${family} ${name}\ntable ${family} ${name} {\n${body}}\n`;
}

/** Loads an nft script from standard input as one atomic transaction. */
export async function applyNftScript(host: NetworkHost, script: string): Promise<void> {
  await hostRun(host, "nft", ["-f", "-"], { input: script });
}

/** Deletes a table; a missing table counts as deleted. */
export async function deleteTable(host: NetworkHost, family: NftFamily, name: string) {
  validateTableName(name);
  await applyNftScript(host, `table ${family} ${name} {}\ndelete table ${family} ${name}\n`);
}

/** Returns whether a table exists. */
export async function tableExists(host: NetworkHost, family: NftFamily, name: string) {
  validateTableName(name);
  const result = await hostRun(host, "nft", ["list", "table", family, name], {
    okExitCodes: [1],
  });
  return result.exitCode === 0;
}
