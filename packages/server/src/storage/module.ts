import type { Core } from "../core/core.js";
import type { Module } from "../modules.js";
import { backupStorageHandlers } from "./backup-storage.js";
import { defineStorageConfig } from "./config.js";
import { imageHandlers } from "./images.js";
import "./resources.js";

/** Storage: image stores, images, primary storage, image caches, volumes and snapshots. */
export function storageModule(): Module {
  const module: Module = {
    handlers: {},
    register(core: Core) {
      defineStorageConfig(core);
      Object.assign(module.handlers, backupStorageHandlers(), imageHandlers());
    },
  };
  return module;
}
