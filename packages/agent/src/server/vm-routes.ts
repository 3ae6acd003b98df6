import type { FastifyInstance, FastifyRequest } from "fastify";
import type { HypervisorDriver } from "../hypervisor.js";
import type {
  ConsoleCmd,
  ConsoleRsp,
  StartVmCmd,
  StopVmCmd,
  VmCmd,
  VmState,
  VmSyncRsp,
} from "../protocol.js";
import { assertInteger, assertUuid, ValidationError } from "../validate.js";
import type { VmInfo } from "../vm/index.js";
import { type ServerContext, taskHeaders } from "./app.js";

type VmWork = (body: Record<string, unknown>) => Promise<object | undefined>;

/**
 * Registers the synchronous `/vm/vmsync` and `/vm/console` and the asynchronous VM tasks. A start
 * with `hypervisorType: "Container"` goes to the container driver; every other command goes to
 * the driver that owns the VM UUID.
 */
export function registerVmRoutes(app: FastifyInstance, context: ServerContext) {
  const { driver, containers } = context;
  const driverOf = (vmUuid: string): HypervisorDriver =>
    containers?.owns(vmUuid) ? containers : driver;

  app.post("/vm/vmsync", async (): Promise<VmSyncRsp> => {
    const states: Record<string, VmState> = {};
    const vms = [...(await driver.refreshStates()), ...((await containers?.refreshStates()) ?? [])];

    for (const vm of vms) {
      states[vm.vmUuid] = vm.state;
    }

    return { success: true, states };
  });

  app.post("/vm/console", async (request): Promise<ConsoleRsp> => {
    const body = request.body as Partial<ConsoleCmd>;
    assertUuid(body.vmUuid, "vmUuid");
    assertInteger(body.bytes, "bytes", 1, 1024 * 1024);
    return {
      success: true,
      vmUuid: body.vmUuid,
      console: await driverOf(body.vmUuid).consoleTail(body.vmUuid, body.bytes),
    };
  });

  const asyncRoute = (path: string, work: VmWork) => {
    app.post(path, async (request: FastifyRequest) => {
      const { taskUuid, callbackUrl } = taskHeaders(request);
      const body = (request.body ?? {}) as Record<string, unknown>;

      context.tasks.submit(taskUuid, callbackUrl, () => work(body));
      return {};
    });
  };

  asyncRoute("/vm/start", async (body) => {
    if (body.hypervisorType === "Container") {
      if (!containers) {
        throw new ValidationError(
          "this agent has no container driver configured, so it cannot start containers",
        );
      }

      return vmResult(await containers.start(body));
    }

    return vmResult(await driver.start(body as unknown as StartVmCmd));
  });
  asyncRoute("/vm/stop", async (body) => {
    const cmd = body as unknown as StopVmCmd;

    if (cmd.timeoutSeconds !== undefined) {
      assertInteger(cmd.timeoutSeconds, "timeoutSeconds", 0, 3600);
    }

    assertUuid(cmd.vmUuid, "vmUuid");
    const timeoutMs = cmd.timeoutSeconds === undefined ? undefined : cmd.timeoutSeconds * 1000;
    const info = await driverOf(cmd.vmUuid).stop(cmd.vmUuid, {
      force: cmd.force === true,
      timeoutMs,
    });
    return vmResult(info);
  });
  asyncRoute("/vm/reboot", async (body) => {
    const vmUuid = vmUuidOf(body);
    return vmResult(await driverOf(vmUuid).reboot(vmUuid));
  });
  asyncRoute("/vm/pause", async (body) => {
    const vmUuid = vmUuidOf(body);
    return vmResult(await driverOf(vmUuid).pause(vmUuid));
  });
  asyncRoute("/vm/resume", async (body) => {
    const vmUuid = vmUuidOf(body);
    return vmResult(await driverOf(vmUuid).resume(vmUuid));
  });
  asyncRoute("/vm/destroy", async (body) => {
    const vmUuid = vmUuidOf(body);
    await driverOf(vmUuid).destroy(vmUuid);
    return { vmUuid };
  });
}

function vmUuidOf(body: Record<string, unknown>) {
  const cmd = body as Partial<VmCmd>;
  assertUuid(cmd.vmUuid, "vmUuid");
  return cmd.vmUuid;
}

function vmResult(info: VmInfo) {
  return { vmUuid: info.vmUuid, state: info.state, vncPort: info.vncPort };
}
