import type { QmpClient, QmpEvent } from "../qmp/index.js";
import { assertInteger, assertOptionPath, assertUuid, ValidationError } from "../validate.js";

/** A volume file to plug into a running VM as a virtio-blk disk. */
export interface HotplugDisk {
  volumeUuid: string;
  /** Absolute path of the volume's top file, without commas. */
  path: string;
  format: "qcow2" | "raw";
}

/** One entry of QMP `query-block`. */
interface BlockInfo {
  /** Name of a `-drive` backend; empty for a node added with `blockdev-add`. */
  device: string;
  /** qdev ID of the device, or the QOM path of its block backend when it has no ID. */
  qdev?: string;
  inserted?: { file: string; "node-name": string; image?: ImageInfo };
}

/** The image part of a `query-block` entry, with its backing chain. */
interface ImageInfo {
  filename: string;
  "virtual-size": number;
  "backing-image"?: ImageInfo;
}

/** Milliseconds the guest gets to release a disk after `device_del`; 60 s by default. */
const DEFAULT_RELEASE_TIMEOUT_MS = 60_000;

/**
 * Names a hot-plugged disk's block node and device after its volume. QEMU keeps node names to
 * 31 bytes, so the node name carries a 27-digit prefix of the UUID.
 */
export function hotplugNames(volumeUuid: string) {
  assertUuid(volumeUuid, "volumeUuid");
  return { nodeName: `vol-${volumeUuid.slice(0, 27)}`, deviceId: `vol-${volumeUuid}` };
}

/** Checks a hotplug request body before any QMP command is sent. */
export function checkHotplugDisk(disk: Partial<HotplugDisk>): HotplugDisk {
  assertUuid(disk.volumeUuid, "volumeUuid");
  assertOptionPath(disk.path, "path");

  if (disk.format !== "qcow2" && disk.format !== "raw") {
    throw new ValidationError(
      `invalid format ${JSON.stringify(disk.format)}: expected qcow2 or raw`,
    );
  }

  return { volumeUuid: disk.volumeUuid, path: disk.path, format: disk.format };
}

/** Finds the disk whose active (top) file is `path`, whether it came from `-drive` or hotplug. */
export async function findDisk(qmp: QmpClient, path: string) {
  const blocks = await qmp.execute<BlockInfo[]>("query-block");
  return blocks.find((block) => block.inserted?.file === path);
}

/**
 * Plugs a volume file into a running VM: `blockdev-add` opens the file (and its backing chain),
 * then `device_add` adds a virtio-blk-pci device on it. A disk already plugged in is left as it
 * is, so a retried request succeeds. When `device_add` fails, the block node is removed again.
 */
export async function attachDisk(qmp: QmpClient, disk: HotplugDisk) {
  const { nodeName, deviceId } = hotplugNames(disk.volumeUuid);

  if (await findDisk(qmp, disk.path)) {
    return;
  }

  await qmp.execute("blockdev-add", {
    "node-name": nodeName,
    driver: disk.format,
    discard: "unmap",
    file: { driver: "file", filename: disk.path },
  });

  try {
    await qmp.execute("device_add", { driver: "virtio-blk-pci", id: deviceId, drive: nodeName });
  } catch (error) {
    await qmp.execute("blockdev-del", { "node-name": nodeName }).catch(() => undefined);
    throw error;
  }
}

/**
 * Unplugs the disk whose top file is `path`: `device_del`, then waits for the DEVICE_DELETED
 * event, which comes only after the guest has released the device (ACPI PCI hotplug), then
 * removes a hot-plugged block node with `blockdev-del`. A `-drive` backend goes with its device.
 * Returns false when no disk uses `path`.
 */
export async function detachDisk(
  qmp: QmpClient,
  path: string,
  timeoutMs = DEFAULT_RELEASE_TIMEOUT_MS,
) {
  const block = await findDisk(qmp, path);

  if (!block) {
    return false;
  }

  // Without an ID, qdev is the QOM path of the virtio-blk backend inside the PCI device, and
  // device_del takes the PCI device's path.
  const device = (block.qdev ?? "").replace(/\/virtio-backend$/, "");

  if (!device) {
    throw new ValidationError(`disk ${path} has no guest device to remove`);
  }

  const deleted = waitForDeviceDeleted(qmp, device, timeoutMs);

  try {
    await qmp.execute("device_del", { id: device });
  } catch (error) {
    deleted.cancel();
    throw error;
  }

  await deleted.promise;

  if (block.device === "" && block.inserted) {
    await removeHotplugNodes(qmp, chainFiles(block.inserted.image));
  }

  return true;
}

function chainFiles(image: ImageInfo | undefined) {
  const files: string[] = [];

  for (let next = image; next; next = next["backing-image"]) {
    files.push(next.filename);
  }

  return files;
}

/**
 * Removes the `blockdev-add` nodes of an unplugged disk's chain. Usually that is the top node,
 * but after an online snapshot the node that `attachDisk` added sits below the snapshot's
 * overlay, and it stays open until it is deleted by name. The overlay's own node goes with the
 * device.
 */
async function removeHotplugNodes(qmp: QmpClient, files: string[]) {
  const nodes =
    await qmp.execute<{ "node-name": string; file: string }[]>("query-named-block-nodes");

  for (const node of nodes) {
    if (node["node-name"].startsWith("vol-") && files.includes(node.file)) {
      await qmp.execute("blockdev-del", { "node-name": node["node-name"] });
    }
  }
}

/** Grows the disk whose top file is `path` with `block_resize`, which also tells the guest the new size. */
export async function resizeDisk(qmp: QmpClient, path: string, size: number) {
  assertInteger(size, "size", 1, Number.MAX_SAFE_INTEGER);
  const block = await findDisk(qmp, path);

  if (!block?.inserted) {
    throw new ValidationError(`no disk of the VM uses ${path}; attach the volume first`);
  }

  await qmp.execute("block_resize", { "node-name": block.inserted["node-name"], size });
}

/** Resolves on the DEVICE_DELETED event of `device` (an ID or a QOM path). */
function waitForDeviceDeleted(qmp: QmpClient, device: string, timeoutMs: number) {
  let cancel = () => {};
  const promise = new Promise<void>((resolve, reject) => {
    const onEvent = (event: QmpEvent) => {
      if (event.event !== "DEVICE_DELETED") {
        return;
      }

      if (event.data?.device === device || event.data?.path === device) {
        cleanup();
        resolve();
      }
    };
    const onClose = () => {
      cleanup();
      reject(new Error(`QEMU exited before the guest released disk device ${device}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(
          `timed out after ${timeoutMs} ms waiting for the guest to release disk device ${device}; the guest needs ACPI PCI hotplug support, or stop the VM and detach the volume then`,
        ),
      );
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      qmp.off("event", onEvent);
      qmp.off("close", onClose);
    };

    cancel = cleanup;
    qmp.on("event", onEvent);
    qmp.on("close", onClose);
  });

  return { promise, cancel: () => cancel() };
}
