import type { FastifyInstance } from "fastify";
import { checkRoot } from "../storage/commands.js";
import type { VolumeRef } from "../storage/primary.js";
import { assertInteger, assertOptionPath, assertUuid } from "../validate.js";
import { checkIso, ejectIso, insertIso } from "../vm/cdrom.js";
import { snapshotDisk } from "../vm/disk-snapshot.js";
import { attachDisk, checkHotplugDisk, detachDisk, resizeDisk } from "../vm/hotplug.js";
import { type ServerContext, taskHeaders } from "./app.js";

type Body = Record<string, unknown>;

/**
 * Registers the asynchronous disk commands on running VMs: `/vm/volume/attach` (hotplug),
 * `/vm/volume/detach` (hot unplug, waits for the guest), `/vm/volume/resize` (`block_resize`),
 * `/vm/volume/snapshot` (`blockdev-snapshot-sync`), and `/vm/iso/attach` and `/vm/iso/detach`, which change the medium of the CD-ROM drive.
 * Each runs in the VM's operation queue, so it never overlaps a start or stop of the same VM.
 */
export function registerVolumeRoutes(app: FastifyInstance, context: ServerContext) {
  const { driver } = context;

  const asyncRoute = (path: string, work: (body: Body) => Promise<object>) => {
    app.post(path, async (request) => {
      const { taskUuid, callbackUrl } = taskHeaders(request);
      const body = (request.body ?? {}) as Body;

      context.tasks.submit(taskUuid, callbackUrl, () => work(body));
      return {};
    });
  };

  asyncRoute("/vm/volume/attach", async (body) => {
    assertUuid(body.vmUuid, "vmUuid");
    const disk = checkHotplugDisk(body);
    await driver.withQmp(body.vmUuid, (qmp) => attachDisk(qmp, disk));
    context.logger.info({ vmUuid: body.vmUuid, volumeUuid: disk.volumeUuid }, "disk plugged in");
    return { vmUuid: body.vmUuid, volumeUuid: disk.volumeUuid };
  });

  asyncRoute("/vm/volume/detach", async (body) => {
    assertUuid(body.vmUuid, "vmUuid");
    assertOptionPath(body.path, "path");
    const path = body.path;
    let timeoutMs: number | undefined;

    if (body.timeoutSeconds !== undefined) {
      assertInteger(body.timeoutSeconds, "timeoutSeconds", 1, 3600);
      timeoutMs = body.timeoutSeconds * 1000;
    }

    const detached = await driver.withQmp(body.vmUuid, (qmp) => detachDisk(qmp, path, timeoutMs));
    context.logger.info({ vmUuid: body.vmUuid, path, detached }, "disk unplugged");
    return { vmUuid: body.vmUuid, detached };
  });

  asyncRoute("/vm/volume/resize", async (body) => {
    assertUuid(body.vmUuid, "vmUuid");
    assertOptionPath(body.path, "path");
    assertInteger(body.size, "size", 1, Number.MAX_SAFE_INTEGER);
    const { path, size } = body;
    await driver.withQmp(body.vmUuid, (qmp) => resizeDisk(qmp, path, size));
    context.logger.info({ vmUuid: body.vmUuid, path, size }, "disk resized");
    return { vmUuid: body.vmUuid, size };
  });

  asyncRoute("/vm/volume/snapshot", async (body) => {
    assertUuid(body.vmUuid, "vmUuid");
    assertUuid(body.topFileUuid, "topFileUuid");
    assertUuid(body.newTopFileUuid, "newTopFileUuid");
    const root = checkRoot({ root: body.root as string });
    const options = {
      volume: body.volume as VolumeRef,
      topFileUuid: body.topFileUuid,
      newTopFileUuid: body.newTopFileUuid,
    };
    const taken = await driver.withQmp(body.vmUuid, (qmp) => snapshotDisk(qmp, root, options));
    context.logger.info(
      { vmUuid: body.vmUuid, volumeUuid: options.volume.volumeUuid, newTop: taken.newTop.path },
      "disk snapshot taken",
    );
    return taken;
  });

  asyncRoute("/vm/iso/attach", async (body) => {
    assertUuid(body.vmUuid, "vmUuid");
    const iso = checkIso(body);
    await driver.withQmp(body.vmUuid, (qmp) => insertIso(qmp, iso));
    context.logger.info({ vmUuid: body.vmUuid, path: iso.path }, "ISO inserted");
    return { vmUuid: body.vmUuid };
  });

  asyncRoute("/vm/iso/detach", async (body) => {
    assertUuid(body.vmUuid, "vmUuid");
    await driver.withQmp(body.vmUuid, (qmp) => ejectIso(qmp));
    context.logger.info({ vmUuid: body.vmUuid }, "ISO ejected");
    return { vmUuid: body.vmUuid };
  });
}
