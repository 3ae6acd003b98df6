import { readdir, readFile, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAlive } from "../src/vm/process.js";
import { AgentProcess, buildAgent, ManagementNode } from "./agent-process.js";
import {
  countMarker,
  createBridge,
  guestImage,
  interfaceExists,
  killVmsUnder,
  newUuid,
  overlay,
  removeDir,
  shortId,
  tempDir,
  waitFor,
} from "./helpers.js";

const BOOT_OK = "TSTACK-GUEST: boot-ok";
const secret = "e2e-secret-0123456789abcdef";
const vmUuid = newUuid();
const hostUuid = newUuid();
const bridge = `tqab${shortId()}`;
const tap = `tqat${shortId()}`;

let dir: string;
let disk: string;
let deleteBridge: (() => Promise<void>) | undefined;
let agent: AgentProcess;
let mn: ManagementNode;
const agents: AgentProcess[] = [];

async function startAgentProcess() {
  const started = new AgentProcess(dir, secret);
  agents.push(started);
  await started.ready();
  return started;
}

function startBody() {
  return {
    vmUuid,
    memoryMiB: 128,
    cpuNum: 1,
    disks: [{ path: disk }],
    nics: [{ mac: "52:54:00:7a:00:02", bridgeName: bridge, tapName: tap }],
    vncPassword: "e2e",
  };
}

async function bootCount() {
  const response = await agent.post("/vm/console", { vmUuid, bytes: 65536 });
  return countMarker(String(response.body.console ?? ""), BOOT_OK);
}

async function qemuPid() {
  return Number((await readFile(`${dir}/vms/${vmUuid}/qemu.pid`, "utf8")).trim());
}

async function vmStates() {
  return (await agent.post("/vm/vmsync", {})).body.states as Record<string, string>;
}

beforeAll(async () => {
  const [image] = await Promise.all([guestImage(), buildAgent()]);
  dir = await tempDir();
  disk = await overlay(image, `${dir}/root.qcow2`);
  await writeFile(`${dir}/host-secret`, `${secret}\n`, { mode: 0o600 });
  deleteBridge = await createBridge(bridge);
  mn = await new ManagementNode(secret).start();
  agent = await startAgentProcess();
});

afterAll(async () => {
  for (const started of agents) {
    await started.kill("SIGKILL");
  }

  await killVmsUnder(dir);
  await deleteBridge?.();
  await mn?.close();
  await removeDir(dir);
});

describe("tstack-agent with real QEMU", { timeout: 120_000 }, () => {
  it("connects to the management node", async () => {
    const response = await agent.post("/host/connect", {
      hostUuid,
      sendCommandUrl: `${mn.url}/sendcommand`,
    });

    expect(response.body).toEqual({ success: true, hostUuid });
  });

  it("starts a VM that boots", async () => {
    const result = await mn.call(agent, "/vm/start", startBody());

    expect(result).toMatchObject({ success: true, vmUuid, state: "Running" });
    expect(result.vncPort).toBeGreaterThanOrEqual(5900);
    await waitFor("boot marker", bootCount, (count) => count === 1);
    expect(await vmStates()).toEqual({ [vmUuid]: "Running" });
  });

  it("pauses and resumes", async () => {
    expect(await mn.call(agent, "/vm/pause", { vmUuid })).toMatchObject({ state: "Paused" });
    expect(await vmStates()).toEqual({ [vmUuid]: "Paused" });
    expect(await mn.call(agent, "/vm/resume", { vmUuid })).toMatchObject({ state: "Running" });
    expect(await vmStates()).toEqual({ [vmUuid]: "Running" });
  });

  it("reboots", async () => {
    expect(await mn.call(agent, "/vm/reboot", { vmUuid })).toMatchObject({ success: true });

    await waitFor("second boot marker", bootCount, (count) => count === 2);
  });

  it("stops and starts again", async () => {
    const stopped = await mn.call(agent, "/vm/stop", { vmUuid, timeoutSeconds: 30 });

    expect(stopped).toMatchObject({ success: true, state: "Stopped" });
    expect(await vmStates()).toEqual({ [vmUuid]: "Stopped" });
    expect(await interfaceExists(tap)).toBe(false);

    expect(await mn.call(agent, "/vm/start", startBody())).toMatchObject({ state: "Running" });
    await waitFor("boot marker", bootCount, (count) => count === 1);
  });

  it("reports QEMU killed behind the agent's back", async () => {
    process.kill(await qemuPid(), "SIGKILL");

    const reports = await waitFor(
      "report",
      async () => mn.reports(),
      (found) => found.length === 1,
    );
    expect(reports[0]?.signed).toBe(true);
    expect(reports[0]?.body).toEqual({
      vmUuid,
      state: "Crashed",
      reason: "QEMU exited unexpectedly",
    });
    expect(await vmStates()).toEqual({ [vmUuid]: "Crashed" });
  });

  it("re-adopts a running VM after an agent restart", async () => {
    await mn.call(agent, "/vm/start", startBody());
    const pid = await qemuPid();

    await agent.kill("SIGKILL");
    agent = await startAgentProcess();

    expect(isAlive(pid)).toBe(true);
    expect(await vmStates()).toEqual({ [vmUuid]: "Running" });
    expect(await mn.call(agent, "/vm/pause", { vmUuid })).toMatchObject({ state: "Paused" });
    expect(mn.reports()).toHaveLength(1);
  });

  it("destroys the VM and keeps the disk", async () => {
    const pid = await qemuPid();

    expect(await mn.call(agent, "/vm/destroy", { vmUuid })).toEqual({ success: true, vmUuid });
    expect(isAlive(pid)).toBe(false);
    expect(await vmStates()).toEqual({});
    expect(await interfaceExists(tap)).toBe(false);
    expect(await readdir(`${dir}/vms`)).toEqual([]);
    expect((await readFile(disk)).length).toBeGreaterThan(0);
  });
});
