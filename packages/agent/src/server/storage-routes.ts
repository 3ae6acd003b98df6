import { createHmac } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import {
  acceptUpload,
  type DownloadProgress,
  imageStoreHttp,
  imageUploadPath,
  type StorageCommandContext,
  type StorageCommands,
  StorageError,
  storageCommandHandlers,
  type UrlPolicy,
  verifyImageFileGrant,
} from "../storage/index.js";
import { assertUuid, ValidationError } from "../validate.js";
import { type ServerContext, taskHeaders } from "./app.js";

/** Commands that may run for minutes: they answer at once and post their result to the callback. */
const ASYNC_PATHS = new Set<keyof StorageCommands>([
  "/imagestore/download",
  "/imagestore/upload",
  "/storage/imagecache/fill",
  "/storage/imagecache/gc",
  "/storage/snapshot/delete",
  "/storage/volume/export",
]);

/** File in the agent's data directory with the URL policy of image downloads. */
export const STORAGE_POLICY_FILE = "storage-policy.json";

/** File in the agent's data directory mapping backup storage UUIDs to image store roots. */
const IMAGE_STORES_FILE = "image-stores.json";

/**
 * Derives the secret that signs image download URLs from the host secret, so a leaked image URL
 * key never signs agent commands. The management node derives the same value.
 */
export function imageStoreSecret(hostSecret: string) {
  return createHmac("sha256", hostSecret).update("tstack image store").digest("hex");
}

type AnyStorageHandler = (body: unknown, context: StorageCommandContext) => Promise<object>;

interface RunningTask {
  controller: AbortController;
  progress: DownloadProgress;
}

/**
 * Registers the storage command paths of `storageCommandHandlers`, plus
 * `/storage/task/progress` and `/storage/task/cancel` for the long ones, and serves image store
 * files at `GET /imagestore/<backupStorageUuid>/images/<imageUuid>/<imageUuid>.<format>`.
 */
export function registerStorageRoutes(app: FastifyInstance, context: ServerContext) {
  const running = new Map<string, RunningTask>();
  const handlers = (policy: UrlPolicy) => storageCommandHandlers(policy);
  const readPolicy = () => readStoragePolicy(context.dataDir);

  for (const path of Object.keys(handlers({})) as (keyof StorageCommands)[]) {
    app.post(path, async (request, reply) => {
      const body = request.body;
      const handler = handlers(await readPolicy())[path] as AnyStorageHandler;

      if (path === "/imagestore/init") {
        await rememberImageStore(context.dataDir, request.body as Record<string, unknown>);
      }

      if (!ASYNC_PATHS.has(path)) {
        return reply.send(await storageReply(() => handler(body, {})));
      }

      const { taskUuid, callbackUrl } = taskHeaders(request);
      const task: RunningTask = { controller: new AbortController(), progress: { bytesDone: 0 } };

      const submitted = context.tasks.submit(taskUuid, callbackUrl, async () => {
        running.set(taskUuid, task);

        try {
          const options = {
            signal: task.controller.signal,
            onProgress: (progress: DownloadProgress) => {
              task.progress = progress;
            },
          };
          return await handler(body, options);
        } finally {
          running.delete(taskUuid);
        }
      });

      return reply.send({ success: true, submitted });
    });
  }

  app.post("/storage/task/progress", async (request) => {
    const taskUuid = taskUuidOf(request);
    const task = running.get(taskUuid);
    const known = context.tasks.has(taskUuid);
    return { success: true, running: task !== undefined, known, ...task?.progress };
  });

  app.post("/storage/task/cancel", async (request) => {
    const taskUuid = taskUuidOf(request);
    const task = running.get(taskUuid);
    task?.controller.abort(new StorageError("ABORTED", `task ${taskUuid} was cancelled`));
    return { success: true, cancelled: task !== undefined };
  });

  registerImageFileRoute(app, context);
  registerUploadRoute(app, context);
}

/**
 * Accepts an image's bytes at `PUT /imagestore/<backupStorageUuid>/uploads/<imageUuid>` with
 * the `expires` and `token` of a grant from the management node (`signedUploadUrl`), while an
 * `/imagestore/upload` task waits for them. The body streams to disk unparsed, so the handler
 * takes over in onRequest, before the JSON parser and the command signature check.
 */
function registerUploadRoute(app: FastifyInstance, context: ServerContext) {
  app.route({
    method: "PUT",
    url: "/imagestore/:backupStorageUuid/uploads/:imageUuid",
    onRequest: async (request, reply) => {
      const { backupStorageUuid, imageUuid } = request.params as Record<string, string>;
      const grant = request.query as { expires: unknown; token: unknown };
      const root = /^[0-9a-f]{32}$/.test(backupStorageUuid ?? "")
        ? (await readImageStores(context.dataDir))[backupStorageUuid!]
        : undefined;

      if (!root || !/^[0-9a-f]{32}$/.test(imageUuid ?? "")) {
        return reply.code(404).send({ success: false, error: "image store or image not found" });
      }

      const secret = imageStoreSecret(context.secret());

      if (!verifyImageFileGrant(secret, imageUploadPath(imageUuid!), grant)) {
        return reply
          .code(403)
          .send({ success: false, error: "invalid or expired upload grant; get a new upload URL" });
      }

      const length = Number(request.headers["content-length"]);
      const totalBytes = Number.isSafeInteger(length) ? length : undefined;

      try {
        const image = await acceptUpload(root, imageUuid!, { stream: request.raw, totalBytes });
        return reply.code(200).send({ success: true, ...image });
      } catch (error) {
        const status = error instanceof StorageError && error.code === "NOT_FOUND" ? 404 : 400;
        request.log.info({ err: error, imageUuid }, "image upload failed");
        return reply.code(status).send({ success: false, error: (error as Error).message });
      }
    },
    handler: async () => undefined,
  });
}

/** Runs a storage command and turns a StorageError into a failure reply with its code. */
async function storageReply(work: () => Promise<object>) {
  try {
    return { success: true, ...(await work()) };
  } catch (error) {
    if (error instanceof StorageError) {
      return { success: false, error: error.message, errorCode: error.code };
    }

    throw error;
  }
}

function taskUuidOf(request: FastifyRequest) {
  const body = request.body as { taskUuid?: unknown };

  if (typeof body.taskUuid !== "string" || !/^[0-9a-zA-Z-]{1,64}$/.test(body.taskUuid)) {
    throw new ValidationError(`invalid taskUuid ${JSON.stringify(body.taskUuid)}`);
  }

  return body.taskUuid;
}

/**
 * Reads the URL policy of image downloads from `<data-dir>/storage-policy.json`, for example
 * `{"allowedFilePrefixes": ["/srv/images"], "allowLoopback": false, "allowLinkLocal": false}`.
 * It is read on every command, so an edit applies without a restart. A missing file allows
 * neither file URLs nor loopback and link-local hosts.
 */
export async function readStoragePolicy(dataDir: string): Promise<UrlPolicy> {
  const path = join(dataDir, STORAGE_POLICY_FILE);
  let text: string;

  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return {};
    }

    throw error;
  }

  const parsed = JSON.parse(text) as Record<string, unknown>;
  const prefixes = parsed.allowedFilePrefixes ?? [];

  if (!Array.isArray(prefixes) || prefixes.some((prefix) => typeof prefix !== "string")) {
    throw new Error(`invalid allowedFilePrefixes in ${path}: expected an array of paths`);
  }

  return {
    allowedFilePrefixes: prefixes as string[],
    allowLoopback: parsed.allowLoopback === true,
    allowLinkLocal: parsed.allowLinkLocal === true,
  };
}

async function readImageStores(dataDir: string): Promise<Record<string, string>> {
  try {
    return JSON.parse(await readFile(join(dataDir, IMAGE_STORES_FILE), "utf8"));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return {};
    }

    throw error;
  }
}

/** Records which root an image store's files are served from; init bodies name the store. */
async function rememberImageStore(dataDir: string, body: Record<string, unknown>) {
  if (body.backupStorageUuid === undefined) {
    return;
  }

  assertUuid(body.backupStorageUuid, "backupStorageUuid");
  const stores = await readImageStores(dataDir);

  if (stores[body.backupStorageUuid] === body.root) {
    return;
  }

  stores[body.backupStorageUuid] = String(body.root);
  const file = join(dataDir, IMAGE_STORES_FILE);
  await writeFile(`${file}.tmp`, JSON.stringify(stores), { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

/**
 * Serves image files of every image store on this host. Each store gets its own inner Fastify
 * instance running the `imageStoreHttp` plugin with that store's root, and requests are handed
 * to it raw, so files stream without buffering. The handover happens in an onRequest hook,
 * before the command signature check, because these requests carry a URL grant instead.
 */
function registerImageFileRoute(app: FastifyInstance, context: ServerContext) {
  const inner = new Map<string, Promise<FastifyInstance>>();

  const serverFor = async (backupStorageUuid: string, root: string) => {
    const key = `${backupStorageUuid}:${root}`;
    const known = inner.get(key);

    if (known) {
      return known;
    }

    // The outer server already logs each request, so the inner one would only repeat it.
    const instance = Fastify({
      loggerInstance: app.log,
      disableRequestLogging: true,
    }) as unknown as FastifyInstance;
    instance.register(imageStoreHttp, {
      root,
      secret: imageStoreSecret(context.secret()),
      prefix: `/imagestore/${backupStorageUuid}`,
    });
    const ready = (async () => {
      await instance.ready();
      return instance;
    })();
    inner.set(key, ready);
    return ready;
  };

  app.addHook("onClose", async () => {
    for (const server of inner.values()) {
      await (await server).close();
    }
  });

  app.route({
    method: "GET",
    url: "/imagestore/:backupStorageUuid/images/:imageUuid/:fileName",
    onRequest: async (request, reply) => {
      const { backupStorageUuid } = request.params as { backupStorageUuid: string };
      const root = /^[0-9a-f]{32}$/.test(backupStorageUuid)
        ? (await readImageStores(context.dataDir))[backupStorageUuid]
        : undefined;

      if (!root) {
        return reply.code(404).send({ error: "image store not found" });
      }

      const server = await serverFor(backupStorageUuid, root);
      reply.hijack();
      server.routing(request.raw, reply.raw);
    },
    handler: async () => undefined,
  });
}
