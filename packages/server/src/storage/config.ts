import type { Core } from "../core/core.js";

/** Global configurations of images and primary storage, with ZStack's names where it has them. */
export function defineStorageConfig(core: Core) {
  const define = core.config.define.bind(core.config);
  define({
    category: "image",
    name: "allowedFileUrlPrefixes",
    type: "String",
    defaultValue: "",
    description:
      "Comma-separated directories whose files file:// image URLs may name; empty rejects file URLs. The agent's storage-policy.json must allow them too",
  });
  define({
    category: "image",
    name: "allowLoopbackUrls",
    type: "Boolean",
    defaultValue: "false",
    description:
      "Accept image URLs whose host is a loopback address (127.0.0.0/8, ::1, localhost); the agent's storage-policy.json must allow them too",
  });
  define({
    category: "image",
    name: "allowLinkLocalUrls",
    type: "Boolean",
    defaultValue: "false",
    description:
      "Accept image URLs whose host is a link-local address (169.254.0.0/16, fe80::/10); the agent's storage-policy.json must allow them too",
  });
  define({
    category: "image",
    name: "download.timeout",
    type: "Integer",
    defaultValue: "10800",
    range: [10, 7 * 86_400],
    description: "Seconds an image download, or the wait for an upload:// image's bytes, may take",
  });
  define({
    category: "image",
    name: "upload.urlTtl",
    type: "Integer",
    defaultValue: "3600",
    range: [60, 86_400],
    description: "Seconds an upload URL from getImageUploadUrl stays valid",
  });
  define({
    category: "primaryStorage",
    name: "overProvisioning.ratio",
    type: "Float",
    defaultValue: "1",
    range: [1, 100],
    description: "Virtual bytes of volumes allocatable per byte of primary storage",
  });
  define({
    category: "primaryStorage",
    name: "reservedCapacity",
    type: "Long",
    defaultValue: String(1024 ** 3),
    range: [0, 1024 ** 5],
    description: "Bytes of each primary storage that volume allocation never uses",
  });
  define({
    category: "primaryStorage",
    name: "imageCache.timeout",
    type: "Integer",
    defaultValue: "10800",
    range: [10, 7 * 86_400],
    description: "Seconds copying an image into a primary storage's image cache may take",
  });
  define({
    category: "primaryStorage",
    name: "imageCache.garbageCollector.interval",
    type: "Integer",
    defaultValue: "86400",
    range: [60, 30 * 86_400],
    description:
      "Seconds between two runs of the image cache garbage collection, which deletes cache entries that no volume or CD-ROM uses",
  });
  define({
    category: "primaryStorage",
    name: "imageCache.garbageCollector.gracePeriod",
    type: "Integer",
    defaultValue: "3600",
    range: [1, 30 * 86_400],
    description:
      "Seconds after its last use by a fill during which an unused image cache entry is kept",
  });
}
