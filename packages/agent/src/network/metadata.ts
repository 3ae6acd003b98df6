import { spawn } from "node:child_process";
import { mkdir, open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { METADATA_ADDRESS } from "./dnsmasq-config.js";
import type { NetworkHost } from "./host.js";
import { validateIpv4 } from "./ipv4.js";
import { readLivePid, stopProcess, waitFor } from "./process.js";
import { l3StateDir, writeFileAtomic } from "./state.js";
import type { ApplyUserdataCmd, L3NetworkSpec, ReleaseUserdataCmd } from "./types.js";

const METADATA_PORT = 80;
const START_TIMEOUT_MS = 10_000;

/** The namespace and state directory of an L3 network's DHCP server. */
export interface MetadataLocation {
  namespace: string;
  stateDir: string;
}

function metadataFiles(dir: string) {
  return {
    data: join(dir, "metadata"),
    pid: join(dir, "metadata.pid"),
    log: join(dir, "metadata.log"),
  };
}

function serverScript(host: NetworkHost): string {
  return (
    host.metadataServerScript ?? fileURLToPath(new URL("./metadata-server.js", import.meta.url))
  );
}

/**
 * Starts the L3 network's metadata server inside its DHCP namespace on 169.254.169.254:80 unless
 * it already runs, and returns whether it started one. Guests reach that address through the DHCP server's option-121 route, so no
 * DNAT is needed. The server is detached and found again by its pid file after an agent restart.
 */
export async function ensureMetadataServer(
  host: NetworkHost,
  location: MetadataLocation,
  l3: L3NetworkSpec,
): Promise<boolean> {
  const files = metadataFiles(location.stateDir);

  if ((await readLivePid(files.pid, files.data)) !== undefined) {
    return false;
  }

  await mkdir(files.data, { recursive: true, mode: 0o755 });
  const log = await open(files.log, "a");
  let exitCode: number | null | undefined;

  try {
    const child = spawn(
      "ip",
      [
        ...["netns", "exec", location.namespace, process.execPath, serverScript(host)],
        ...["--dir", files.data, "--address", METADATA_ADDRESS, "--port", String(METADATA_PORT)],
        ...["--pid-file", files.pid],
      ],
      { detached: true, stdio: ["ignore", log.fd, log.fd] },
    );
    child.on("exit", (code) => {
      exitCode = code;
    });
    child.unref();
  } finally {
    await log.close();
  }

  await waitFor(
    async () => {
      if (exitCode !== undefined) {
        const tail = (await readFile(files.log, "utf8").catch(() => "")).trim().slice(-500);
        throw new Error(`metadata server exited with code ${exitCode} at start: ${tail}`);
      }

      return (await readLivePid(files.pid, files.data)) !== undefined;
    },
    START_TIMEOUT_MS,
    `metadata server pid file ${files.pid} (see ${files.log})`,
  );
  host.logger.info({ l3NetworkUuid: l3.l3NetworkUuid }, "metadata server started");
  return true;
}

/** Stops an L3 network's metadata server if it runs. */
export async function stopMetadataServer(host: NetworkHost, l3NetworkUuid: string) {
  const files = metadataFiles(l3StateDir(host, l3NetworkUuid));
  const pid = await readLivePid(files.pid, files.data);

  if (pid !== undefined) {
    await stopProcess(pid);
    host.logger.info({ l3NetworkUuid, pid }, "metadata server stopped");
  }
}

/**
 * Writes the metadata one guest address receives. Without `userdata` the guest's user-data request
 * gets 404, as cloud-init expects when there is none.
 */
export async function applyUserdata(host: NetworkHost, cmd: ApplyUserdataCmd): Promise<void> {
  const dir = join(
    metadataFiles(l3StateDir(host, cmd.l3NetworkUuid)).data,
    validateIpv4(cmd.ip, "NIC address"),
  );

  await mkdir(dir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(join(dir, "hostname"), cmd.hostname);
  await writeFileAtomic(join(dir, "instance-id"), cmd.vmUuid);

  if (cmd.userdata === undefined) {
    await rm(join(dir, "user-data"), { force: true });
  } else {
    await writeFileAtomic(join(dir, "user-data"), cmd.userdata);
  }
}

/** Removes the metadata of one guest address. */
export async function releaseUserdata(host: NetworkHost, cmd: ReleaseUserdataCmd): Promise<void> {
  const data = metadataFiles(l3StateDir(host, cmd.l3NetworkUuid)).data;
  await rm(join(data, validateIpv4(cmd.ip, "NIC address")), { recursive: true, force: true });
}
