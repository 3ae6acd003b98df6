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
 * Aborting `signal` tells the agent to cancel the task, so it removes its partial file. When two
 * polls in a row return that the agent never received the task, it restarted and lost the task,
 * so the call fails instead of waiting for `timeoutMs`.
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
  const lost = new AbortController();
  let unknownPolls = 0;

  const poller = setInterval(async () => {
    try {
      const progress = await core.agents.call<TaskProgress>(
        target,
        "/storage/task/progress",
        { taskUuid },
        5000,
      );
      unknownPolls = progress.known === false ? unknownPolls + 1 : 0;

      if (unknownPolls >= LOST_TASK_POLLS) {
        core.log.warn({ taskUuid, hostUuid, path }, "the agent lost a storage task");
        lost.abort(lostTask(path, hostUuid));
      }

      if (progress.running) {
        await options.onProgress?.(progress);
      }
    } catch (error) {
      core.log.debug({ err: error, taskUuid }, "storage progress poll failed");
    }
  }, 1000);

  try {
    const signal = options.signal ? AbortSignal.any([options.signal, lost.signal]) : lost.signal;
    return await core.agents.callAsync<T>(target, path, body, {
      timeoutMs: options.timeoutMs,
      taskUuid,
      signal,
    });
  } catch (error) {
    throw lost.signal.aborted ? lost.signal.reason : error;
  } finally {
    clearInterval(poller);
    options.signal?.removeEventListener("abort", cancel);
  }
}

/** Progress of a storage task; `known` is false when the agent never received the task. */
type TaskProgress = TransferProgress & { running: boolean; known?: boolean };

/**
 * Polls in a row that must find the task unknown before the call fails. One poll can arrive
 * before the command itself, so one is not enough.
 * NOTE: a command that takes more than about two seconds to reach a loaded agent would be failed
 * as lost although the agent runs it.
 */
const LOST_TASK_POLLS = 2;

function lostTask(path: string, hostUuid: string) {
  return new AgentError(
    `agent command ${path} failed on host ${hostUuid}: the agent restarted and lost the task; retry the operation`,
    path,
    hostUuid,
  );
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
