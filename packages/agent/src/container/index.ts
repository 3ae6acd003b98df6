export { adoptContainers } from "./adopt.js";
export { ContainerDriver, type ContainerDriverOptions } from "./driver.js";
export { checkTarball, ImageCache, type TarCompression } from "./image-cache.js";
export { buildOciConfig } from "./oci-config.js";
export { type ResolvedContainerSpec, resolveContainerSpec } from "./spec.js";
export { UnsafeTarError } from "./tar.js";
export type { ContainerIpv4, ContainerNicSpec, ContainerRootfs, ContainerSpec } from "./types.js";
