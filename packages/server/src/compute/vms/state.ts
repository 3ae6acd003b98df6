import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import { emitEvent } from "../../core/events.js";
import { now } from "../../core/ids.js";
import type { Database, VmInstanceTable } from "../../db/schema.js";
import { allowedActions, TRANSITIONS, type VmState } from "./states.js";

export type VmRow = VmInstanceTable;

export async function loadVm(
  tx: Transaction<Database> | { selectFrom: Transaction<Database>["selectFrom"] },
  vmUuid: string,
): Promise<VmRow> {
  const vm = await tx
    .selectFrom("vmInstances")
    .selectAll()
    .where("uuid", "=", vmUuid)
    .executeTakeFirst();

  if (!vm) {
    throw new ApiError("notFound", `VM ${vmUuid} was not found`);
  }

  return vm;
}

/** Rejects an API in a state that does not allow it, naming the state and what is allowed. */
export function checkAction(vm: VmRow, apiName: string, allowed: VmState[]) {
  if (!allowed.includes(vm.state as VmState)) {
    throw new ApiError(
      "invalidState",
      `cannot run ${apiName} on VM ${vm.uuid} in state ${vm.state}; allowed in this state: ${allowedActions(vm.state).join(", ") || "none"}`,
    );
  }
}

/**
 * Moves a VM to a new state under the transition table and a version check, together with
 * other column changes, and emits `/vm/state/change`. Returns the updated row.
 */
export async function setVmState(
  tx: Transaction<Database>,
  vm: VmRow,
  next: VmState,
  changes: Partial<VmRow> = {},
): Promise<VmRow> {
  if (vm.state !== next && !TRANSITIONS[vm.state as VmState]?.includes(next)) {
    throw new ApiError("invalidState", `VM ${vm.uuid} cannot go from ${vm.state} to ${next}`);
  }

  const result = await tx
    .updateTable("vmInstances")
    .set({ ...changes, state: next, lastOpDate: now(), version: vm.version + 1 })
    .where("uuid", "=", vm.uuid)
    .where("version", "=", vm.version)
    .executeTakeFirst();

  if (Number(result.numUpdatedRows) !== 1) {
    throw new ApiError("invalidState", `VM ${vm.uuid} changed while this operation ran; retry it`);
  }

  if (vm.state !== next) {
    await emitEvent(tx, "/vm/state/change", {
      resourceUuid: vm.uuid,
      accountUuid: vm.accountUuid,
      content: {
        vmUuid: vm.uuid,
        oldState: vm.state,
        newState: next,
        hostUuid: changes.hostUuid ?? vm.hostUuid,
      },
    });
  }

  return { ...vm, ...changes, state: next, version: vm.version + 1 };
}
