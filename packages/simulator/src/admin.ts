import type { IncomingMessage, ServerResponse } from "node:http";
import { verifyRequest } from "@tstack/agent/auth";
import { CommandError } from "./commands/index.js";
import { ADMIN_PATHS, type SimulatorControl, type VmStateChange } from "./control.js";
import { FaultSpecError, parseFaultSpec } from "./faults.js";
import { send } from "./http.js";
import type { HostRegistration, StorageRegistration } from "./state.js";

type Body = Record<string, unknown>;

/** An admin request with an invalid field. */
class AdminInputError extends Error {}

function uuidField(body: Body, name: string) {
  const value = body[name];

  if (typeof value !== "string" || !/^[0-9a-f]{32}$/.test(value)) {
    throw new AdminInputError(
      `invalid ${name} ${JSON.stringify(value)}: expected 32 lower-case hex digits`,
    );
  }

  return value;
}

function sizeField(body: Body, name: string) {
  const value = body[name];

  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new AdminInputError(
      `invalid ${name} ${JSON.stringify(value)}: expected a non-negative integer`,
    );
  }

  return value;
}

function secretField(body: Body) {
  if (typeof body.secret !== "string" || body.secret.length < 16) {
    throw new AdminInputError("invalid secret: expected a string of at least 16 characters");
  }

  return body.secret;
}

/** Checks a host registration from JSON. */
export function parseHostRegistration(body: Body): HostRegistration {
  return {
    uuid: uuidField(body, "uuid"),
    secret: secretField(body),
    cpuNum: sizeField(body, "cpuNum"),
    memoryBytes: sizeField(body, "memoryBytes"),
  };
}

/** Checks a storage registration from JSON. */
export function parseStorageRegistration(body: Body): StorageRegistration {
  if (body.kind !== "primary" && body.kind !== "backup") {
    throw new AdminInputError(
      `invalid kind ${JSON.stringify(body.kind)}: expected primary or backup`,
    );
  }

  if (typeof body.url !== "string" || !body.url.startsWith("/")) {
    throw new AdminInputError(`invalid url ${JSON.stringify(body.url)}: expected an absolute path`);
  }

  return {
    uuid: uuidField(body, "uuid"),
    kind: body.kind,
    url: body.url,
    totalCapacity: sizeField(body, "totalCapacity"),
    availableCapacity: sizeField(body, "availableCapacity"),
    ...(body.kind === "backup" ? { secret: secretField(body) } : {}),
  };
}

function parseVmStateChange(body: Body): VmStateChange {
  if (!["Running", "Paused", "Stopped", "Crashed"].includes(String(body.state))) {
    throw new AdminInputError(
      `invalid state ${JSON.stringify(body.state)}: expected Running, Paused, Stopped or Crashed`,
    );
  }

  return {
    hostUuid: uuidField(body, "hostUuid"),
    vmUuid: uuidField(body, "vmUuid"),
    state: body.state as VmStateChange["state"],
    reason: typeof body.reason === "string" ? body.reason : "changed by the simulator admin",
  };
}

async function dispatch(control: SimulatorControl, path: string, body: Body) {
  switch (path) {
    case ADMIN_PATHS.registerHost:
      await control.registerHost(parseHostRegistration(body));
      return {};
    case ADMIN_PATHS.unregisterHost:
      return { removed: await control.unregisterHost(uuidField(body, "uuid")) };
    case ADMIN_PATHS.registerStorage:
      await control.registerStorage(parseStorageRegistration(body));
      return {};
    case ADMIN_PATHS.unregisterStorage:
      return { removed: await control.unregisterStorage(uuidField(body, "uuid")) };
    case ADMIN_PATHS.state:
      return {
        nodes: await control.state(body.uuid === undefined ? undefined : uuidField(body, "uuid")),
      };
    case ADMIN_PATHS.createFault:
      return { fault: await control.createFault(parseFaultSpec(body)) };
    case ADMIN_PATHS.listFaults:
      return { faults: await control.listFaults() };
    case ADMIN_PATHS.deleteFault:
      return { removed: await control.deleteFault(uuidField(body, "uuid")) };
    case ADMIN_PATHS.clearFaults:
      return { removed: await control.clearFaults() };
    case ADMIN_PATHS.reportVmState:
      await control.reportVmState(parseVmStateChange(body));
      return {};
    default:
      return undefined;
  }
}

/**
 * Serves the admin channel: POSTs under `/simulator/` signed with the admin token the way agent
 * commands are signed with a host secret. Without a token the channel is closed.
 */
export async function handleAdmin(
  control: SimulatorControl,
  adminToken: string | undefined,
  request: IncomingMessage,
  rawBody: string,
  response: ServerResponse,
) {
  if (!adminToken) {
    send(response, 403, {
      error: "the admin channel is closed: this simulator was started without an admin token",
    });
    return;
  }

  const path = request.url ?? "";
  const verified = verifyRequest(adminToken, request.method ?? "", path, rawBody, request.headers);

  if (!verified.ok) {
    send(response, 401, { error: `admin request rejected: ${verified.reason}` });
    return;
  }

  try {
    const body = (rawBody === "" ? {} : JSON.parse(rawBody)) as Body;
    const reply = await dispatch(control, path, body);

    if (reply === undefined) {
      send(response, 404, { error: `unknown admin path ${path}` });
      return;
    }

    send(response, 200, reply);
  } catch (error) {
    const known =
      error instanceof AdminInputError ||
      error instanceof FaultSpecError ||
      error instanceof CommandError ||
      error instanceof SyntaxError;

    if (!known) {
      throw error;
    }

    send(response, 400, { error: (error as Error).message });
  }
}
