// Measures, without asserting, the time from a /vm/start request to the guest's boot marker
// against the same QEMU command line started directly, and the agent's RSS with VMs running.
// Opt-in because it takes about a minute: TSTACK_AGENT_BENCH=1 npx vitest run <this file>.
import { spawn } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, it } from "vitest";
import { buildQemuArgs } from "../src/vm/cmdline.js";
import { vmPaths } from "../src/vm/paths.js";
import { isAlive, waitForExit } from "../src/vm/process.js";
import { resolveVmSpec } from "../src/vm/spec.js";
import { createTap, deleteTap } from "../src/vm/tap.js";
import { AgentProcess, buildAgent, ManagementNode } from "./agent-process.js";
import {
  createBridge,
  guestImage,
  killVmsUnder,
  newUuid,
  overlay,
  removeDir,
  shortId,
  tempDir,
} from "./helpers.js";

const BOOT_OK = "TSTACK-GUEST: boot-ok";
const RUNS = 3;
/** VMs running while the agent's RSS is read, as many as its target names. */
const RSS_VMS = 10;
const secret = "bench-secret-0123456789abcdef";
const bridge = `tqab${shortId()}`;

let dir: string;
let image: string;
let deleteBridge: (() => Promise<void>) | undefined;
let agent: AgentProcess;
let mn: ManagementNode;
const pids: number[] = [];

function spec(vmUuid: string, disk: string, index: number) {
  return {
    vmUuid,
    memoryMiB: 128,
    cpuNum: 1,
    disks: [{ path: disk }],
    nics: [
      {
        mac: `52:54:00:7b:00:${index.toString(16).padStart(2, "0")}`,
        bridgeName: bridge,
        tapName: `tqaq${shortId()}`,
      },
    ],
  };
}

async function waitForMarker(path: string, since: number) {
  while (Date.now() - since < 120_000) {
    const text = await readFile(path, "utf8").catch(() => "");

    if (text.includes(BOOT_OK)) {
      return Date.now() - since;
    }

    await sleep(20);
  }

  throw new Error(`no boot marker in ${path}`);
}

async function rssKiB(pid: number) {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
}

describe.runIf(process.env.TSTACK_AGENT_BENCH === "1")("agent boot timing", () => {
  beforeAll(async () => {
    [image] = await Promise.all([guestImage(), buildAgent()]);
    dir = await tempDir();
    await writeFile(`${dir}/host-secret`, secret, { mode: 0o600 });
    deleteBridge = await createBridge(bridge);
    mn = await new ManagementNode(secret).start();
    agent = await new AgentProcess(dir, secret).ready();
  });

  afterAll(async () => {
    for (const pid of pids) {
      if (isAlive(pid)) {
        process.kill(pid, "SIGKILL");
        await waitForExit(pid, 5000);
      }
    }

    await agent?.kill("SIGKILL");
    await killVmsUnder(dir);
    await deleteBridge?.();
    await mn?.close();
    await removeDir(dir);
  });

  it("times /vm/start to boot marker", async () => {
    const results: number[] = [];

    for (let run = 0; run < RUNS; run++) {
      const vmUuid = newUuid();
      const disk = await overlay(image, `${dir}/agent-${run}.qcow2`);
      const since = Date.now();
      await mn.call(agent, "/vm/start", spec(vmUuid, disk, run));
      results.push(await waitForMarker(`${dir}/vms/${vmUuid}/console.log`, since));
      await mn.call(agent, "/vm/destroy", { vmUuid });
    }

    console.log(`agent /vm/start -> boot-ok ms: ${results.join(" / ")}`);
  });

  it("times the same command line started directly", async () => {
    const results: number[] = [];

    for (let run = 0; run < RUNS; run++) {
      const vmUuid = newUuid();
      const disk = await overlay(image, `${dir}/hand-${run}.qcow2`);
      const resolved = resolveVmSpec(spec(vmUuid, disk, run));
      const paths = vmPaths(`${dir}/hand`, vmUuid);
      const args = buildQemuArgs(resolved, paths, "tcg").filter((arg) => arg !== "-S");
      const tap = resolved.nics[0]!.tapName;
      await mkdir(paths.dir, { recursive: true });
      await createTap(tap, bridge);

      const since = Date.now();
      const child = spawn("qemu-system-x86_64", args, { stdio: "ignore" });
      pids.push(child.pid!);
      results.push(await waitForMarker(paths.consoleLog, since));

      child.kill("SIGKILL");
      await waitForExit(child.pid!, 5000);
      await deleteTap(tap);
      await rm(paths.dir, { recursive: true, force: true });
    }

    console.log(`direct QEMU spawn -> boot-ok ms: ${results.join(" / ")}`);
  });

  it("reads agent RSS with VMs running", async () => {
    const idle = await rssKiB(agent.pid);
    const vms: string[] = [];

    for (let index = 0; index < RSS_VMS; index++) {
      const vmUuid = newUuid();
      const disk = await overlay(image, `${dir}/rss-${index}.qcow2`);
      await mn.call(agent, "/vm/start", spec(vmUuid, disk, index));
      vms.push(vmUuid);
    }

    for (const vmUuid of vms) {
      await waitForMarker(`${dir}/vms/${vmUuid}/console.log`, Date.now());
    }

    await agent.post("/vm/vmsync", {});
    const busy = await rssKiB(agent.pid);
    console.log(`agent RSS: ${idle} KiB idle, ${busy} KiB with ${vms.length} VMs running`);

    for (const vmUuid of vms) {
      await mn.call(agent, "/vm/destroy", { vmUuid });
    }
  });
});
