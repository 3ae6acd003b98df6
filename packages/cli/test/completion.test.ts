import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireBuild, tstack } from "./run.js";

const HARNESS = fileURLToPath(new URL("./zsh-complete.zsh", import.meta.url));

let dir: string;
let script: string;

/** Returns the matches a real zsh offers when TAB is pressed after `words`. */
async function zshComplete(...words: string[]) {
  const { stdout } = await promisify(execFile)("zsh", ["-f", HARNESS, script, dir, ...words], {
    timeout: 20_000,
  });
  return [...stdout.matchAll(/<match>([^\r\n]*)/g)].map((match) => match[1]);
}

beforeAll(async () => {
  requireBuild();
  dir = mkdtempSync(join(tmpdir(), "tcli-zsh-"));
  script = join(dir, "tstack.zsh");
  const generated = await tstack(join(dir, "config.json"), ["completion", "zsh"]);
  expect(generated.code).toBe(0);
  writeFileSync(script, generated.stdout);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("zsh completion", () => {
  it("passes zsh's syntax check", async () => {
    const { stderr } = await promisify(execFile)("zsh", ["-n", script]);

    expect(stderr).toBe("");
  });

  it("offers the verbs of an alias", async () => {
    const verbs = await zshComplete("tstack", "vm", "");

    expect(verbs).toEqual(expect.arrayContaining(["list", "get", "create", "stop", "expunge"]));
    expect(verbs).not.toContain("vm");
  });

  it("filters verbs by the typed prefix", async () => {
    expect(await zshComplete("tstack", "vm-instance", "st")).toEqual(["start", "stop"]);
  });

  it("offers resources and flags", async () => {
    const resources = await zshComplete("tstack", "zo");
    const flags = await zshComplete("tstack", "-o", "json", "cluster", "create", "--zo");

    expect(resources).toEqual(["zone"]);
    expect(flags).toEqual(["--zone"]);
  });
});

describe("bash completion", () => {
  it("offers the verbs of an alias", async () => {
    const generated = await tstack(join(dir, "config.json"), ["completion", "bash"]);
    const file = join(dir, "tstack.bash");
    writeFileSync(file, generated.stdout);
    const body = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _tstack';

    const { stdout } = await promisify(execFile)("bash", [
      "-c",
      `${body}; echo "\${COMPREPLY[*]}"`,
      "bash",
      file,
      "tstack",
      "vm",
      "st",
    ]);

    expect(stdout.trim()).toBe("start stop");
  });
});
