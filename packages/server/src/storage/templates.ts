import { basename } from "node:path";
import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import { newUuid, now } from "../core/ids.js";
import { insertResource, inventoryOf, loadResource } from "../resources/crud.js";
import type { ApiCall, ApiHandler } from "../rest/api.js";
import { agentReason, imageUploadUrl, storageCallAsync, type TransferProgress } from "./agent.js";
import {
  markImage,
  recordFailures,
  recordStoredCopy,
  type StoredImage,
  usableBackupStorages,
} from "./images.js";
import { type VolumeTarget, volumeTarget } from "./snapshot-files.js";

type Row = Record<string, unknown>;

/** VM states in which a volume's file does not change, so it can be copied. */
const QUIET_VM_STATES = ["Stopped", "Created"];

/** The template kind of each volume type, as ZStack names the media types. */
const MEDIA_TYPES = { Root: "RootVolumeTemplate", Data: "DataVolumeTemplate" } as const;

/** Loads the volume and checks that it can be copied now. */
async function checkVolume(core: Core, call: ApiCall, type: "Root" | "Data") {
  const field = type === "Root" ? "rootVolumeUuid" : "volumeUuid";
  const volume = await loadResource(core.kysely, "Volume", call.path[field]!, call.caller);

  if (volume.type !== type) {
    throw new ApiError(
      "invalidArgument",
      `${field}: volume ${String(volume.uuid)} is a ${String(volume.type)} volume; use the ${type === "Root" ? "data" : "root"} volume template API for it`,
    );
  }

  if (volume.status !== "Ready" || !volume.topFileUuid) {
    throw new ApiError(
      "invalidState",
      `volume ${String(volume.uuid)} is ${String(volume.status)}; only a Ready volume with a file can become an image`,
    );
  }

  if (volume.vmInstanceUuid) {
    const vm = await loadResource(
      core.kysely,
      "VmInstance",
      String(volume.vmInstanceUuid),
      call.caller,
    );

    if (!QUIET_VM_STATES.includes(String(vm.state))) {
      throw new ApiError(
        "invalidState",
        `volume ${String(volume.uuid)} belongs to VM ${String(vm.uuid)}, which is ${String(vm.state)}; stop the VM first, so the image is consistent`,
      );
    }
  }

  return volume;
}

/** Loads a Ready snapshot of a volume of `type` and its volume. The snapshot's file never changes. */
async function checkSnapshot(core: Core, call: ApiCall, type: "Root" | "Data") {
  const uuid = call.path.snapshotUuid!;
  const snapshot = await loadResource(core.kysely, "VolumeSnapshot", uuid, call.caller);

  if (snapshot.volumeType !== type) {
    throw new ApiError(
      "invalidArgument",
      `snapshotUuid: snapshot ${uuid} is of a ${String(snapshot.volumeType)} volume; use the ${type === "Root" ? "data" : "root"} volume template API for it`,
    );
  }

  if (snapshot.status !== "Ready") {
    throw new ApiError(
      "invalidState",
      `snapshot ${uuid} is ${String(snapshot.status)}; only a Ready snapshot can become an image`,
    );
  }

  const volume = await loadResource(
    core.kysely,
    "Volume",
    String(snapshot.volumeUuid),
    call.caller,
  );
  return { snapshot, volume };
}

async function insertImage(
  core: Core,
  call: ApiCall,
  volume: Row,
  type: "Root" | "Data",
  url: string,
) {
  const imageUuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
  const stamp = now();
  const sourceImage = volume.rootImageUuid
    ? await core.kysely
        .selectFrom("images")
        .select(["platform", "guestOsType"])
        .where("uuid", "=", String(volume.rootImageUuid))
        .executeTakeFirst()
    : undefined;

  await core.transact(async (tx) => {
    await insertResource(
      tx,
      core,
      "Image",
      {
        uuid: imageUuid,
        name: call.params.name,
        description: call.params.description ?? null,
        state: "Enabled",
        status: "Creating",
        url,
        mediaType: MEDIA_TYPES[type],
        format: "qcow2",
        platform: call.params.platform ?? sourceImage?.platform ?? "Linux",
        guestOsType: call.params.guestOsType ?? sourceImage?.guestOsType ?? null,
        size: 0,
        actualSize: 0,
        md5: null,
        sha256: null,
        lastError: null,
      },
      { ...call, params: { ...call.params, resourceUuid: imageUuid } },
    );
    await tx
      .insertInto("imageBackupStorageRefs")
      .values(
        (call.params.backupStorageUuids as string[]).map((backupStorageUuid) => ({
          imageUuid,
          backupStorageUuid,
          status: "Creating",
          installPath: null,
          lastError: null,
          createDate: stamp,
          lastOpDate: stamp,
        })),
      )
      .execute();
  });

  return imageUuid;
}

/**
 * Copies a file of the volume, with its backing chain, into one image store: the store waits for
 * an upload while the volume's host flattens the chain and PUTs the result to the upload URL.
 */
async function copyToStore(
  core: Core,
  call: ApiCall,
  source: VolumeTarget,
  fileUuid: string,
  imageUuid: string,
  store: { uuid: string; url: string; hostUuid: string },
) {
  const timeoutMs = core.config.number("image", "download.timeout") * 1000;
  const waiting = new AbortController();
  call.signal.addEventListener("abort", () => waiting.abort(), { once: true });
  const upload = storageCallAsync<StoredImage>(
    core,
    store.hostUuid,
    "/imagestore/upload",
    { root: store.url, imageUuid },
    { timeoutMs, signal: waiting.signal },
  );
  // The export's failure is the one to report, so the upload's own rejection waits for it.
  upload.catch(() => undefined);

  const report = async (progress: TransferProgress) => {
    const total = progress.totalBytes;
    const percent = total ? Math.min(99, Math.floor((progress.bytesDone * 100) / total)) : 0;
    await call.progress(percent, `uploaded ${progress.bytesDone} of ${total ?? "?"} bytes`);
  };

  try {
    const uploadUrl = await imageUploadUrl(core, store, imageUuid, timeoutMs / 1000);
    await storageCallAsync(
      core,
      source.hostUuid,
      "/storage/volume/export",
      {
        root: source.root,
        volume: source.ref,
        topFileUuid: fileUuid,
        uploadUrl,
      },
      { timeoutMs, signal: call.signal, onProgress: report },
    );
  } catch (error) {
    waiting.abort();
    throw error;
  }

  const stored = await upload;
  await recordStoredCopy(core, imageUuid, store, stored);
  return stored;
}

/** The file an image is copied from: a volume's top file, or the file a snapshot froze. */
interface TemplateSource {
  volume: Row;
  fileUuid: string;
  url: string;
  what: string;
}

async function createTemplate(
  core: Core,
  call: ApiCall,
  type: "Root" | "Data",
  from: TemplateSource,
) {
  const { volume } = from;
  const stores = await usableBackupStorages(core, call.params.backupStorageUuids as string[]);
  const source = await volumeTarget(core, volume);
  const imageUuid = await insertImage(core, call, volume, type, from.url);
  const results: PromiseSettledResult<StoredImage>[] = [];

  // One store at a time, because each copy reads the whole volume on its host.
  for (const store of stores) {
    results.push(
      await copyToStore(core, call, source, from.fileUuid, imageUuid, store).then(
        (value) => ({ status: "fulfilled", value }) as const,
        (reason: unknown) => ({ status: "rejected", reason }) as const,
      ),
    );
  }

  await recordFailures(core, imageUuid, stores, results);
  const stored = results.find((result) => result.status === "fulfilled")?.value;

  if (!stored) {
    const reasons = results.map((result) =>
      result.status === "rejected" ? agentReason(result.reason) : "",
    );
    await markImage(core, imageUuid, { status: "Error", lastError: reasons.join("; ") });
    throw new ApiError(
      call.signal.aborted ? "cancelled" : "operationFailed",
      `failed to create image ${imageUuid} from ${from.what}: ${reasons.join("; ")}`,
      "check the volume's host and the image stores, then retry",
    );
  }

  await markImage(core, imageUuid, {
    status: "Ready",
    format: stored.format,
    size: stored.virtualSize,
    actualSize: stored.size,
    md5: stored.md5,
    sha256: stored.sha256,
    lastError: null,
  });
  return { inventory: await inventoryOf(core.kysely, "Image", imageUuid) };
}

function templateHandler(type: "Root" | "Data"): ApiHandler {
  return {
    async check(core, call) {
      await checkVolume(core, call, type);
      await usableBackupStorages(core, call.params.backupStorageUuids as string[]);
    },
    async run(core, call) {
      const volume = await checkVolume(core, call, type);
      const from = {
        volume,
        fileUuid: String(volume.topFileUuid),
        url: `volume://${String(volume.uuid)}`,
        what: `volume ${String(volume.uuid)}`,
      };

      // The VM's queue keeps it from starting while its volume is read.
      return volume.vmInstanceUuid
        ? core.queues.run(`resource:${String(volume.vmInstanceUuid)}`, () =>
            createTemplate(core, call, type, from),
          )
        : createTemplate(core, call, type, from);
    },
  };
}

/**
 * Copies a snapshot's frozen file with its backing chain. No file of that chain changes while the
 * VM runs, so the VM may be in any state. A snapshot delete merges files of the chain, so the copy
 * runs in the queue of the volume's VM, or of the volume, as deletes do.
 */
function snapshotTemplateHandler(type: "Root" | "Data"): ApiHandler {
  return {
    async check(core, call) {
      await checkSnapshot(core, call, type);
      await usableBackupStorages(core, call.params.backupStorageUuids as string[]);
    },
    async run(core, call) {
      const { snapshot, volume } = await checkSnapshot(core, call, type);
      const key = String(volume.vmInstanceUuid ?? volume.uuid);
      const from = {
        volume,
        fileUuid: basename(String(snapshot.primaryStorageInstallPath), ".qcow2"),
        url: `volume-snapshot://${String(snapshot.uuid)}`,
        what: `snapshot ${String(snapshot.uuid)} of volume ${String(volume.uuid)}`,
      };

      return core.queues.run(`resource:${key}`, async () => {
        await checkSnapshot(core, call, type);
        return createTemplate(core, call, type, from);
      });
    },
  };
}

/** The APIs that copy a volume or a volume snapshot into image stores as a new image. */
export function templateHandlers() {
  return {
    createRootVolumeTemplateFromRootVolume: templateHandler("Root"),
    createDataVolumeTemplateFromVolume: templateHandler("Data"),
    createRootVolumeTemplateFromVolumeSnapshot: snapshotTemplateHandler("Root"),
    createDataVolumeTemplateFromVolumeSnapshot: snapshotTemplateHandler("Data"),
  };
}
