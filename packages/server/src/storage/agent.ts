import { createHmac } from "node:crypto";
import { signedImageUrl, signedUploadUrl } from "@tstack/agent/storage";
import { ApiError } from "@tstack/api";
import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { newUuid } from "../core/ids.js";
import { AgentError } from "../drivers/agent-client.js";

/** Progress of a long storage command, as the agent reports it. */
export interface TransferProgress {
  bytesDone: number;
  totalBytes?: number;
}

/** Sends a short storage command to a host's agent. */
export async function storageCall<T>(
  core: Core,
  hostUuid: string,
  path: string,
  body: Record<string, unknown>,
): Promise<T> {
  const target = await agentTarget(core, hostUuid);
  return core.agents.call<T>(target, path, body, 120_000);
}

/**
 * Sends a long storage command and polls its progress every second until the callback arrives.
 * Aborting `signal` tells the agent to cancel the task, so it removes its partial file.
 */
export async function storageCallAsync<T>(
  core: Core,
  hostUuid: string,
  path: string,
  body: Record<string, unknown>,
  options: {
    timeoutMs: number;
    signal?: AbortSignal;
    onProgress?: (progress: TransferProgress) => void | Promise<void>;
  },
): Promise<T> {
  const target = await agentTarget(core, hostUuid);
  const taskUuid = newUuid();
  const cancel = () =>
    void core.agents
      .call(target, "/storage/task/cancel", { taskUuid }, 10_000)
      .catch((error) => core.log.warn({ err: error, taskUuid }, "failed to cancel a storage task"));
  options.signal?.addEventListener("abort", cancel, { once: true });

  const poller = setInterval(async () => {
    try {
      const progress = await core.agents.call<TransferProgress & { running: boolean }>(
        target,
        "/storage/task/progress",
        { taskUuid },
        5000,
      );

      if (progress.running) {
        await options.onProgress?.(progress);
      }
    } catch (error) {
      core.log.debug({ err: error, taskUuid }, "storage progress poll failed");
    }
  }, 1000);

  try {
    return await core.agents.callAsync<T>(target, path, body, {
      timeoutMs: options.timeoutMs,
      taskUuid,
      signal: options.signal,
    });
  } finally {
    clearInterval(poller);
    options.signal?.removeEventListener("abort", cancel);
  }
}

/** The message of an agent failure without the transport prefix, for resource `lastError`. */
export function agentReason(error: unknown) {
  if (error instanceof AgentError) {
    return error.message.replace(/^agent command \S+ failed on host \w+: /, "");
  }

  return error instanceof Error ? error.message : String(error);
}

/** Wraps an agent failure into an API error that states what failed and what to do. */
export function storageFailure(what: string, error: unknown, todo: string) {
  if (error instanceof ApiError) {
    return error;
  }

  return new ApiError("operationFailed", `${what}: ${agentReason(error)}`, todo);
}

/**
 * Derives the key that signs image download URLs from the host secret of the image store's host,
 * exactly as the agent's storage routes do (`imageStoreSecret`).
 */
function imageStoreSecret(hostSecret: string) {
  return createHmac("sha256", hostSecret).update("tstack image store").digest("hex");
}

/** Builds a short-lived URL that lets another host read one image file of an image store. */
export async function imageDownloadUrl(
  core: Core,
  store: { uuid: string; hostUuid: string },
  image: { imageUuid: string; format: "qcow2" | "raw" | "tar" },
  ttlSeconds = 3600,
) {
  const target = await agentTarget(core, store.hostUuid);
  const base = `http://${target.managementIp}:${target.agentPort}/imagestore/${store.uuid}`;
  return signedImageUrl(base, imageStoreSecret(target.secret), image, ttlSeconds);
}

/** Builds a short-lived URL that accepts one image's bytes by HTTP PUT on an image store. */
export async function imageUploadUrl(
  core: Core,
  store: { uuid: string; hostUuid: string },
  imageUuid: string,
  ttlSeconds: number,
) {
  const target = await agentTarget(core, store.hostUuid);
  const base = `http://${target.managementIp}:${target.agentPort}/imagestore/${store.uuid}`;
  return signedUploadUrl(base, imageStoreSecret(target.secret), imageUuid, ttlSeconds);
}
