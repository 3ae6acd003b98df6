import { execFileSync } from "node:child_process";

/** Lists the files of a qcow2 chain, top first, as qemu-img reads them from disk. */
export function backingChain(path: string) {
  const output = execFileSync(
    "qemu-img",
    ["info", "-U", "--backing-chain", "--output=json", path],
    { encoding: "utf8" },
  );
  return (JSON.parse(output) as { filename: string }[]).map((entry) => entry.filename);
}
