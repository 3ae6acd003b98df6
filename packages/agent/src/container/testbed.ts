import { execFileSync } from "node:child_process";
import { chmod, copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** busybox-static from Debian, a single binary with every applet. */
export const BUSYBOX = "/bin/busybox";

const APPLETS = ["sh", "cat", "echo", "sleep", "ping", "ip", "hostname", "ls", "touch", "kill"];

/**
 * Builds a busybox root filesystem tarball (`tar.gz`) for tests. Its `/sbin/init` prints the
 * container's memory and pids limits and host name to the console, runs `extraInit` (shell
 * lines), then sleeps until SIGTERM. `initPath` moves the init script, so a test can build an
 * image whose `/sbin/init` is missing.
 */
export async function buildBusyboxTarball(dir: string, extraInit = "", initPath = "/sbin/init") {
  const root = join(dir, "rootfs-src");

  for (const folder of ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root"]) {
    await mkdir(join(root, folder), { recursive: true });
  }

  await copyFile(BUSYBOX, join(root, "bin", "busybox"));

  for (const applet of APPLETS) {
    await symlink("busybox", join(root, "bin", applet));
  }

  const init = [
    "#!/bin/sh",
    "echo TCT-BOOT mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)" +
      " pids=$(cat /sys/fs/cgroup/pids/pids.max) host=$(hostname)",
    "trap 'echo TCT-TERM; exit 0' TERM",
    extraInit,
    "while true; do sleep 1 & wait $!; done",
    "",
  ].join("\n");
  await writeFile(join(root, initPath), init);
  await chmod(join(root, initPath), 0o755);

  const tarPath = join(dir, "busybox-rootfs.tar.gz");
  execFileSync("tar", ["--create", "--gzip", "--file", tarPath, "--directory", root, "."]);
  return tarPath;
}
