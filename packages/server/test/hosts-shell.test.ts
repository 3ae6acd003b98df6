import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { dependencyLayout } from "../src/compute/hosts/bundle.js";
import { parsePreflight } from "../src/compute/hosts/remote.js";
import { quote, sh, shellCommand } from "../src/compute/hosts/shell.js";

const hostile = [
  "plain",
  "with space",
  "it's",
  "'",
  "''",
  "$(touch /tmp/tsh-pwned)",
  "`id`",
  "a;b|c&d",
  "new\nline",
  "*",
  "-n",
  "\\'\\",
  "",
];

/** Returns the words /bin/sh makes of `command`. */
function shellWords(command: string) {
  const output = execFileSync("sh", [
    "-c",
    `for word in ${command}; do printf '%s\\0' "$word"; done`,
  ]);
  return output.toString().split("\0").slice(0, -1);
}

describe("remote shell quoting", () => {
  it("keeps every value one literal word", () => {
    for (const value of hostile) {
      expect(shellWords(quote(value))).toEqual([value]);
    }

    expect(shellWords(shellCommand(hostile))).toEqual(hostile);
  });

  it("quotes only the values of an sh template", () => {
    const path = "/tmp/x'; rm -rf /; '";
    expect(sh`test -f ${path} && echo ${7}`).toBe(
      `test -f '/tmp/x'\\''; rm -rf /; '\\''' && echo '7'`,
    );
    expect(execFileSync("sh", ["-c", sh`printf '%s' ${path}`]).toString()).toBe(path);
  });

  it("rejects NUL bytes and empty commands", () => {
    expect(() => quote("a\0b")).toThrow(/NUL/);
    expect(() => shellCommand([])).toThrow(/program name/);
  });
});

describe("preflight parsing", () => {
  it("reads architecture, OS, memory and virtualization", () => {
    const facts = parsePreflight(
      [
        "x86_64",
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"',
        "MemTotal:        4026532 kB",
        "0\n",
      ].join("\n---\n"),
    );
    expect(facts).toEqual({
      architecture: "x86_64",
      os: "debian",
      memoryBytes: 4026532 * 1024,
      virtualization: "tcg",
    });
    expect(parsePreflight("x86_64\n---\nID=linuxmint\nID_LIKE=ubuntu\n---\n---\n2").os).toBe(
      "linuxmint ubuntu",
    );
  });
});

describe("agent bundle layout", () => {
  it("includes the agent's run-time dependencies and their trees", async () => {
    const { agentEntryPoint } = await import("../src/compute/hosts/local.js");
    const { dirname } = await import("node:path");
    const layout = dependencyLayout(dirname(dirname(agentEntryPoint())));
    const targets = [...layout.keys()];
    expect(targets).toEqual(
      expect.arrayContaining([
        "node_modules/fastify",
        "node_modules/pino",
        "node_modules/commander",
        "node_modules/avvio",
      ]),
    );
    expect(targets.some((target) => target.includes("vitest") || target.includes("ssh2"))).toBe(
      false,
    );
  });
});
