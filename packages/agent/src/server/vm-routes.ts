import type { FastifyInstance, FastifyRequest } from "fastify";
import type {
  ConsoleCmd,
  ConsoleRsp,
  StartVmCmd,
  StopVmCmd,
  VmCmd,
  VmState,
  VmSyncRsp,
} from "../protocol.js";
import { assertInteger, assertUuid } from "../validate.js";
import type { VmInfo } from "../vm/index.js";
import { type ServerContext, taskHeaders } from "./app.js";

type VmWork = (body: Record<string, unknown>) => Promise<object | undefined>;

/** Registers the synchronous `/vm/vmsync` and `/vm/console` and the asynchronous VM tasks. */
export function registerVmRoutes(app: FastifyInstance, context: ServerContext) {
  const { driver } = context;

  app.post("/vm/vmsync", async (): Promise<VmSyncRsp> => {
    const states: Record<string, VmState> = {};

    for (const vm of await driver.refreshStates()) {
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
      console: await driver.consoleTail(body.vmUuid, body.bytes),
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

  asyncRoute("/vm/start", async (body) =>
    vmResult(await driver.start(body as unknown as StartVmCmd)),
  );
  asyncRoute("/vm/stop", async (body) => {
    const cmd = body as unknown as StopVmCmd;

    if (cmd.timeoutSeconds !== undefined) {
      assertInteger(cmd.timeoutSeconds, "timeoutSeconds", 0, 3600);
    }

    const timeoutMs = cmd.timeoutSeconds === undefined ? undefined : cmd.timeoutSeconds * 1000;
    return vmResult(await driver.stop(cmd.vmUuid, { force: cmd.force === true, timeoutMs }));
  });
  asyncRoute("/vm/reboot", async (body) => vmResult(await driver.reboot(vmUuidOf(body))));
  asyncRoute("/vm/pause", async (body) => vmResult(await driver.pause(vmUuidOf(body))));
  asyncRoute("/vm/resume", async (body) => vmResult(await driver.resume(vmUuidOf(body))));
  asyncRoute("/vm/destroy", async (body) => {
    const vmUuid = vmUuidOf(body);
    await driver.destroy(vmUuid);
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
