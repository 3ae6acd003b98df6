import { describe, expect, it } from "vitest";
import { LIST_COLUMNS } from "../src/columns.js";
import { formatResult } from "../src/output.js";
import { ProgressBar } from "../src/progress.js";
import { toYaml } from "../src/yaml.js";

describe("yaml output", () => {
  it("quotes strings that read as other types", () => {
    expect(toYaml({ a: "true", b: "012", c: "", d: "null", e: "1e3", f: "~" })).toBe(
      'a: "true"\nb: "012"\nc: ""\nd: "null"\ne: "1e3"\nf: "~"\n',
    );
  });

  it("quotes strings with YAML syntax characters", () => {
    expect(toYaml({ a: "k: v", b: "- x", c: "#x", d: "x\ny", e: "trailing " })).toBe(
      'a: "k: v"\nb: "- x"\nc: "#x"\nd: "x\\ny"\ne: "trailing "\n',
    );
  });

  it("writes nested lists and objects in block style", () => {
    expect(toYaml({ list: [1, { name: "x", tags: [] }, [true, null]], empty: {} })).toBe(
      "list:\n  - 1\n  - name: x\n    tags: []\n  - - true\n    - null\nempty: {}\n",
    );
  });
});

describe("table output", () => {
  it("hides long columns in lists", () => {
    const table = formatResult(
      { inventories: [{ uuid: "u1", name: "a", description: "long", createDate: "d" }] },
      "table",
    );

    expect(table).toBe("UUID  NAME\nu1    a\n");
  });

  it("shows a VM's state and addresses in VM lists", () => {
    const vm = {
      uuid: "u1",
      name: "web",
      state: "Running",
      vmNics: [{ ip: "10.0.0.5" }, { ip: "10.1.0.5" }],
      hypervisorType: "KVM",
      cpuNum: 1,
      memorySize: 128,
      hostUuid: null,
    };
    const table = formatResult({ inventories: [vm] }, "table", LIST_COLUMNS.VmInstance);

    expect(table.split("\n")[0]).toMatch(/^UUID +NAME +STATE +IP +TYPE +CPU +MEMORY +HOSTUUID$/);
    expect(table.split("\n")[1]).toMatch(
      /^u1 +web +Running +10\.0\.0\.5,10\.1\.0\.5 +KVM +1 +128 *$/,
    );
  });

  it("prints an empty list as nothing", () => {
    expect(formatResult({ inventories: [] }, "table")).toBe("");
  });

  it("prints one inventory as key and value rows", () => {
    expect(formatResult({ inventory: { uuid: "u1", tags: ["a"] } }, "table")).toBe(
      'uuid  u1\ntags  ["a"]\n',
    );
  });
});

describe("progress bar", () => {
  function fakeStream(isTTY: boolean) {
    const written: string[] = [];
    const stream = { isTTY, write: (text: string) => written.push(text) };
    return { written, stream: stream as unknown as NodeJS.WriteStream };
  }

  it("draws percent and text on a terminal", () => {
    const { written, stream } = fakeStream(true);
    const bar = new ProgressBar(stream);

    bar.update({ uuid: "j", progress: 50, progressText: "copying" });
    bar.end();

    expect(written[0]).toBe(`\r\x1b[2K[${"#".repeat(15)}${"-".repeat(15)}] 50% copying`);
    expect(written[1]).toBe("\r\x1b[2K");
  });

  it("draws nothing when stderr is not a terminal", () => {
    const { written, stream } = fakeStream(false);
    const bar = new ProgressBar(stream);

    bar.update({ uuid: "j", progress: 10, progressText: null });
    bar.end();

    expect(written).toEqual([]);
  });
});
