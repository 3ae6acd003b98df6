import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkTarball, ImageCache } from "./image-cache.js";
import { checkTarEntries, readTarEntries, UnsafeTarError } from "./tar.js";

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tct-tar-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Builds one ustar header block with a valid checksum. */
function header(name: string, type: string, linkName = "", size = 0) {
  const block = Buffer.alloc(512);
  block.write(name, 0, 100, "utf8");
  block.write("0000644\0", 100, "latin1");
  block.write("0000000\0", 108, "latin1");
  block.write("0000000\0", 116, "latin1");
  block.write(`${size.toString(8).padStart(11, "0")}\0`, 124, "latin1");
  block.write("00000000000\0", 136, "latin1");
  block.write(type, 156, "latin1");
  block.write(linkName, 157, 100, "utf8");
  block.write("ustar\0", 257, "latin1");
  block.write("00", 263, "latin1");
  block.fill(0x20, 148, 156);
  let sum = 0;

  for (const byte of block) {
    sum += byte;
  }

  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return block;
}

/** Writes a tar made of header-only members and returns its path. */
async function craftTar(members: Array<[string, string, string?]>) {
  const blocks = members.map(([name, type, link]) => header(name, type, link));
  const path = join(dir, "crafted.tar");
  await writeFile(path, Buffer.concat([...blocks, Buffer.alloc(1024)]));
  return path;
}

async function check(members: Array<[string, string, string?]>) {
  checkTarEntries(await readTarEntries(await craftTar(members)));
}

describe("tar member check", () => {
  it("accepts a normal root tree", async () => {
    await expect(
      check([
        ["./", "5"],
        ["./bin/", "5"],
        ["./bin/busybox", "0"],
        ["./bin/sh", "2", "busybox"],
        ["./bin/ls", "1", "./bin/busybox"],
        ["./lib64", "2", "/usr/lib64"],
        ["./usr/lib/x", "2", "../../bin/busybox"],
      ]),
    ).resolves.toBeUndefined();
  });

  it.each([
    ["absolute name", [["/etc/passwd", "0"]]],
    ["dot-dot name", [["./../etc/passwd", "0"]]],
    ["dot-dot inside", [["a/../../b", "0"]]],
    ["character device", [["dev/null", "3"]]],
    ["block device", [["dev/sda", "4"]]],
    ["FIFO", [["run/fifo", "6"]]],
    ["hard link to absolute", [["x", "1", "/etc/shadow"]]],
    ["hard link with dot-dot", [["x", "1", "../outside"]]],
    ["symlink above root", [["etc/x", "2", "../../outside"]]],
    ["symlink at root above", [["x", "2", ".."]]],
    [
      "member below symlink",
      [
        ["etc", "2", "/"],
        ["etc/passwd", "0"],
      ],
    ],
    [
      "member below relative symlink",
      [
        ["a", "2", "b"],
        ["a/c", "0"],
      ],
    ],
    [
      "member replacing a symlink",
      [
        ["a", "2", "/etc"],
        ["a", "5"],
        ["a/b", "0"],
      ],
    ],
    [
      "hard link through symlink",
      [
        ["a", "2", "/etc"],
        ["x", "1", "a/shadow"],
      ],
    ],
  ] as Array<[string, Array<[string, string, string?]>]>)("rejects %s", async (_, members) => {
    await expect(check(members)).rejects.toBeInstanceOf(UnsafeTarError);
  });

  it("rejects a global PAX path", async () => {
    const record = "13 path=/etc\n";
    const path = join(dir, "global.tar");
    const data = Buffer.alloc(512);
    data.write(record);
    await writeFile(
      path,
      Buffer.concat([
        header("pax", "g", "", record.length),
        data,
        header("x", "0"),
        Buffer.alloc(1024),
      ]),
    );

    await expect(readTarEntries(path)).rejects.toThrow(/global PAX header/);
  });

  it("rejects a bad checksum", async () => {
    const path = join(dir, "bad.tar");
    const block = header("x", "0");
    block[0] = 0x79;
    await writeFile(path, Buffer.concat([block, Buffer.alloc(1024)]));

    await expect(readTarEntries(path)).rejects.toThrow(/bad checksum/);
  });

  it("rejects a missing end marker", async () => {
    const path = join(dir, "short.tar");
    await writeFile(path, header("x", "0"));

    await expect(readTarEntries(path)).rejects.toThrow(/truncated/);
  });
});

describe("tar reading of GNU tar output", () => {
  async function tree() {
    const root = join(dir, "tree");
    const long = "d".repeat(120);
    await mkdir(join(root, "bin", long), { recursive: true });
    await writeFile(join(root, "bin", "busybox"), "binary");
    await writeFile(join(root, "bin", long, "f".repeat(110)), "x");
    await symlink("busybox", join(root, "bin", "sh"));
    await symlink(`/${"t".repeat(150)}`, join(root, "bin", "longlink"));
    return { root, long };
  }

  it.each([
    ["gnu", []],
    ["pax", ["--format=pax"]],
  ])("reads long names in %s format", async (_, format) => {
    const { root, long } = await tree();
    const path = join(dir, "image.tar");
    execFileSync("tar", ["-c", "-f", path, ...format, "-C", root, "."]);

    const entries = await readTarEntries(path);
    const names = entries.map((entry) => entry.name.replace(/^\.\//, ""));

    expect(names).toContain(`bin/${long}/${"f".repeat(110)}`);
    expect(entries.find((entry) => entry.name.endsWith("longlink"))?.linkName).toBe(
      `/${"t".repeat(150)}`,
    );
  });

  it.each([
    ["tar", [], "none"],
    ["tar.gz", ["-z"], "gzip"],
    ["tar.xz", ["-J"], "xz"],
  ])("checks a %s file", async (suffix, flag, compression) => {
    const { root } = await tree();
    const path = join(dir, `image.${suffix}`);
    execFileSync("tar", ["-c", ...flag, "-f", path, "-C", root, "."]);

    await expect(checkTarball(path, join(dir, "scratch"))).resolves.toBe(compression);
  });

  it("rejects a GNU tar with absolute names", async () => {
    const { root } = await tree();
    const path = join(dir, "abs.tar.gz");
    execFileSync("tar", ["-c", "-z", "-P", "-f", path, join(root, "bin", "busybox")]);

    await expect(checkTarball(path, join(dir, "scratch"))).rejects.toThrow(/absolute path/);
  });

  it("rejects a file that is not a tar", async () => {
    const path = join(dir, "text.tar");
    await writeFile(path, "x".repeat(2048));

    await expect(checkTarball(path, join(dir, "scratch"))).rejects.toThrow(/not a tar archive/);
  });
});

describe("image cache", () => {
  it("unpacks once and keeps symlinks", async () => {
    const root = join(dir, "tree");
    await mkdir(join(root, "bin"), { recursive: true });
    await writeFile(join(root, "bin", "busybox"), "binary");
    await symlink("busybox", join(root, "bin", "sh"));
    const tarPath = join(dir, "image.tar.gz");
    execFileSync("tar", ["-c", "-z", "-f", tarPath, "-C", root, "."]);
    const cache = new ImageCache(join(dir, "cache"));
    const uuid = "a".repeat(32);

    const [first, second] = await Promise.all([
      cache.rootfs(uuid, tarPath),
      cache.rootfs(uuid, tarPath),
    ]);

    expect(first).toBe(join(dir, "cache", uuid, "rootfs"));
    expect(second).toBe(first);
    expect((await readdir(join(first, "bin"))).sort()).toEqual(["busybox", "sh"]);
    expect(await readdir(join(dir, "cache"))).toEqual([uuid]);
  });

  it("leaves nothing behind for a rejected archive", async () => {
    const tarPath = await craftTar([
      ["etc", "2", "/"],
      ["etc/passwd", "0"],
    ]);
    const cache = new ImageCache(join(dir, "cache"));

    await expect(cache.rootfs("b".repeat(32), tarPath)).rejects.toBeInstanceOf(UnsafeTarError);
    expect(await readdir(join(dir, "cache"))).toEqual([]);
  });
});
