import { randomUUID } from "node:crypto";

/** Kinds of injected fault, by their effect on a matching command. */
export const FAULT_KINDS = ["fail", "delay", "timeout", "drop-callback", "host-down"] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

/** A fault as an admin requests it. */
export interface FaultSpec {
  /** Agent command path such as `/vm/start`, or `*` for every path. */
  path: string;
  /** Host or storage uuid the fault applies to; unset applies it to every host and storage. */
  resourceUuid?: string;
  kind: FaultKind;
  /** Error text of a `fail` fault. */
  errorText?: string;
  /** Delay of a `delay` fault, in milliseconds. */
  delayMs?: number;
  /** Number of commands the fault applies to; unset keeps it until it is deleted. */
  count?: number;
}

/** An injected fault with its uuid and remaining uses. */
export interface Fault extends FaultSpec {
  uuid: string;
  /** Commands it still applies to; null until deleted. */
  usesLeft: number | null;
  createDate: string;
}

/** A fault spec that cannot be injected. */
export class FaultSpecError extends Error {
  override name = "FaultSpecError";
}

const MAX_DELAY_MS = 600_000;

/** Checks a fault spec from JSON and returns it typed, or throws a FaultSpecError naming the field. */
export function parseFaultSpec(input: unknown): FaultSpec {
  const body = (input ?? {}) as Record<string, unknown>;

  if (typeof body.path !== "string" || !/^(\*|\/[a-z0-9/_-]{1,200})$/.test(body.path)) {
    throw new FaultSpecError(
      `invalid path ${JSON.stringify(body.path)}: give an agent command path such as /vm/start, or *`,
    );
  }

  if (!FAULT_KINDS.includes(body.kind as FaultKind)) {
    throw new FaultSpecError(
      `invalid kind ${JSON.stringify(body.kind)}: expected one of ${FAULT_KINDS.join(", ")}`,
    );
  }

  const kind = body.kind as FaultKind;
  const spec: FaultSpec = { path: body.path, kind };

  if (body.resourceUuid !== undefined) {
    if (typeof body.resourceUuid !== "string" || !/^[0-9a-f]{32}$/.test(body.resourceUuid)) {
      throw new FaultSpecError(
        `invalid resourceUuid ${JSON.stringify(body.resourceUuid)}: expected 32 lower-case hex digits, or leave it out for all`,
      );
    }

    spec.resourceUuid = body.resourceUuid;
  }

  if (kind === "host-down" && spec.path !== "*") {
    throw new FaultSpecError(
      `invalid path ${spec.path} for a host-down fault: a down host responds to no command, so give *`,
    );
  }

  if (kind === "fail") {
    if (typeof body.errorText !== "string" || body.errorText.length === 0) {
      throw new FaultSpecError("missing errorText: a fail fault needs the error text to return");
    }

    spec.errorText = body.errorText.slice(0, 2000);
  }

  if (kind === "delay") {
    const delay = body.delayMs;

    if (
      typeof delay !== "number" ||
      !Number.isInteger(delay) ||
      delay < 0 ||
      delay > MAX_DELAY_MS
    ) {
      throw new FaultSpecError(
        `invalid delayMs ${JSON.stringify(delay)}: expected an integer from 0 to ${MAX_DELAY_MS}`,
      );
    }

    spec.delayMs = delay;
  }

  if (body.count !== undefined) {
    const count = body.count;

    if (typeof count !== "number" || !Number.isInteger(count) || count < 1) {
      throw new FaultSpecError(
        `invalid count ${JSON.stringify(count)}: expected a positive integer, or leave it out to keep the fault until it is deleted`,
      );
    }

    spec.count = count;
  }

  return spec;
}

/** The faults a command meets: every matching delay, then at most one fault that ends it. */
export interface FaultMatch {
  delayMs: number;
  /** The fault that decides the outcome: fail, timeout, drop-callback or host-down. */
  outcome?: Fault;
}

/**
 * Injected faults, in creation order. Matching a command uses up one count of every fault it
 * applies, so `count: 1` affects exactly one command.
 */
export class FaultTable {
  readonly #faults: Fault[] = [];

  add(spec: FaultSpec): Fault {
    const fault: Fault = {
      ...spec,
      uuid: randomUUID().replaceAll("-", ""),
      usesLeft: spec.count ?? null,
      createDate: new Date().toISOString(),
    };
    this.#faults.push(fault);
    return fault;
  }

  list(): Fault[] {
    return this.#faults.map((fault) => ({ ...fault }));
  }

  /** Deletes one fault; returns whether it existed. */
  remove(uuid: string) {
    const index = this.#faults.findIndex((fault) => fault.uuid === uuid);

    if (index < 0) {
      return false;
    }

    this.#faults.splice(index, 1);
    return true;
  }

  /** Deletes every fault; returns how many there were. */
  clear() {
    const count = this.#faults.length;
    this.#faults.length = 0;
    return count;
  }

  /** Returns whether a host-down fault covers the resource, without using it up. */
  isDown(resourceUuids: string[]) {
    return this.#faults.some(
      (fault) => fault.kind === "host-down" && appliesTo(fault, "*", resourceUuids),
    );
  }

  /**
   * Finds the faults for one command and uses them up. `asynchronous` is whether the command
   * has a callback: a drop-callback fault neither matches nor is used up by other commands.
   */
  take(path: string, resourceUuids: string[], asynchronous: boolean): FaultMatch {
    // A down host responds to nothing, so no other fault of the command gets used up.
    const down = this.#faults.find(
      (fault) => fault.kind === "host-down" && appliesTo(fault, path, resourceUuids),
    );

    if (down) {
      this.#use(down);
      return { delayMs: 0, outcome: down };
    }

    const match: FaultMatch = { delayMs: 0 };

    for (const fault of [...this.#faults]) {
      if (!appliesTo(fault, path, resourceUuids)) {
        continue;
      }

      if (fault.kind === "drop-callback" && !asynchronous) {
        continue;
      }

      if (fault.kind === "delay") {
        match.delayMs += fault.delayMs ?? 0;
      } else if (!match.outcome) {
        match.outcome = fault;
      } else {
        continue;
      }

      this.#use(fault);
    }

    return match;
  }

  #use(fault: Fault) {
    if (fault.usesLeft === null) {
      return;
    }

    fault.usesLeft -= 1;

    if (fault.usesLeft <= 0) {
      this.remove(fault.uuid);
    }
  }
}

function appliesTo(fault: Fault, path: string, resourceUuids: string[]) {
  const pathMatches = fault.path === "*" || fault.path === path;
  const resourceMatches =
    fault.resourceUuid === undefined || resourceUuids.includes(fault.resourceUuid);
  return pathMatches && resourceMatches;
}
