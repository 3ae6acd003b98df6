import type { QmpClient } from "../qmp/index.js";
import { assertOptionPath, ValidationError } from "../validate.js";
import type { DiskSpec } from "./types.js";

/**
 * qdev ID of the IDE CD-ROM drive every VM gets at start, empty unless an ISO is inserted. IDE
 * devices cannot be hot-plugged on QEMU's i440fx machine, so the drive is always present and
 * attaching an ISO only changes its medium.
 */
export const CDROM_DEVICE = "cdrom0";

/** Returns the QEMU arguments of the CD-ROM drive, with the ISO inserted when one is given. */
export function cdromArgs(iso?: DiskSpec) {
  const medium = iso
    ? `file=${iso.path},format=${iso.format ?? "qcow2"},if=none,id=${CDROM_DEVICE}-medium,media=cdrom,readonly=on`
    : `if=none,id=${CDROM_DEVICE}-medium,media=cdrom,readonly=on`;
  return [
    "-drive",
    medium,
    "-device",
    `ide-cd,drive=${CDROM_DEVICE}-medium,id=${CDROM_DEVICE},bus=ide.1,unit=0`,
  ];
}

/** Checks an ISO request body: the cached image's path and its format. */
export function checkIso(body: { path?: unknown; format?: unknown }) {
  assertOptionPath(body.path, "path");

  const format = body.format;

  if (format !== "qcow2" && format !== "raw") {
    throw new ValidationError(`invalid format ${JSON.stringify(format)}: expected qcow2 or raw`);
  }

  return { path: body.path, format: format as "qcow2" | "raw" };
}

/** Returns the file in the VM's CD-ROM drive, or undefined when the drive is empty. */
export async function cdromMedium(qmp: QmpClient) {
  const blocks = await qmp.execute<{ qdev?: string; inserted?: { file: string } }[]>("query-block");
  const drive = blocks.find((block) => block.qdev === CDROM_DEVICE);

  if (!drive) {
    throw new ValidationError(
      `the VM has no CD-ROM drive ${CDROM_DEVICE} because an agent without CD-ROM support started it; stop and start the VM first`,
    );
  }

  return drive.inserted?.file;
}

/** Inserts an ISO into the VM's CD-ROM drive, replacing any medium, read-only. */
export async function insertIso(qmp: QmpClient, iso: { path: string; format: "qcow2" | "raw" }) {
  if ((await cdromMedium(qmp)) === iso.path) {
    return;
  }

  await qmp.execute("blockdev-change-medium", {
    id: CDROM_DEVICE,
    filename: iso.path,
    format: iso.format,
    "read-only-mode": "read-only",
    force: true,
  });
}

/** Removes the medium from the VM's CD-ROM drive even if the guest locked the tray. */
export async function ejectIso(qmp: QmpClient) {
  if ((await cdromMedium(qmp)) === undefined) {
    return;
  }

  await qmp.execute("eject", { id: CDROM_DEVICE, force: true });
}
