import type { Core } from "../core/core.js";
import type { Module } from "../modules.js";
import { queryHandler } from "../resources/crud.js";
import { backupStorageHandlers } from "./backup-storage.js";
import { defineStorageConfig } from "./config.js";
import { ImageCacheCollector } from "./image-cache-gc.js";
import { failUnfinishedImages, imageHandlers } from "./images.js";
import { isoHandlers } from "./iso.js";
import { prepareOnConnectedHost, primaryStorageHandlers } from "./primary-storage.js";
import "./resources.js";
import { registerAttachWorkflows } from "./attach-workflows.js";
import { recoverUnfinishedSnapshots } from "./snapshot-recovery.js";
import { snapshotHandlers } from "./snapshots-api.js";
import { templateHandlers } from "./templates.js";
import { attachHandlers } from "./volume-attach.js";
import { resizeHandlers } from "./volume-resize.js";
import { StorageVolumeService } from "./volume-service.js";
import { removeUnfinishedDataVolumes, volumeHandlers } from "./volumes-api.js";

/** Storage: image stores, images, primary storage, image caches and root volumes. */
export function storageModule(): Module {
  let moduleCore: Core | undefined;
  let collector: ImageCacheCollector | undefined;
  let unsubscribe: (() => void) | undefined;
  const module: Module = {
    handlers: {},
    register(core: Core) {
      moduleCore = core;
      defineStorageConfig(core);
      collector = new ImageCacheCollector(core);
      const volumes = new StorageVolumeService(core);
      core.services.volumes = volumes;
      registerAttachWorkflows(core);
      Object.assign(
        module.handlers,
        backupStorageHandlers(),
        imageHandlers(),
        primaryStorageHandlers(),
        volumeHandlers(),
        snapshotHandlers(),
        attachHandlers(),
        resizeHandlers(),
        templateHandlers(),
        isoHandlers(volumes),
        { queryVolume: queryHandler("Volume") },
      );
    },
    async recover() {
      await removeUnfinishedDataVolumes(moduleCore!);
      await failUnfinishedImages(moduleCore!);
      await recoverUnfinishedSnapshots(moduleCore!);
    },
    start() {
      collector!.start();
      unsubscribe = moduleCore!.bus.subscribe("host.connected", async (message) => {
        const { hostUuid } = message.body as { hostUuid: string };
        await prepareOnConnectedHost(moduleCore!, hostUuid);
      });
    },
    stop() {
      unsubscribe?.();
      collector?.stop();
    },
  };
  return module;
}
