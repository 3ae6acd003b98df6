/**
 * The suite's slow test: a real Debian 12 cloud image with systemd and cloud-init, booted under
 * TCG through the REST API. cloud-init finds its NoCloud seed on the metadata address from the
 * kernel command line, over the DHCP server's option-121 route, so this covers DHCP, the route
 * and the metadata server with the guest software real clouds run.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCloud } from "./cloud.js";
import { startTestServer, type TestServer } from "./harness.js";

type Vm = { uuid: string; state: string } & Record<string, unknown>;

const ROOT = resolve(import.meta.dirname, "../../..");
const CIDR = "172.30.91.0/24";
const BOOT_TIMEOUT_MS = 5 * 60_000;
const MARKER = /TSD-MARKER host=(\S+) note=(\S+)/;

/** Builds (or finds in its cache) the Debian image. A cold build takes one to two minutes. */
async function debianImage() {
  const script = resolve(ROOT, "scripts/build-debian-image.sh");
  const { stdout } = await promisify(execFile)("bash", [script], { maxBuffer: 16 << 20 });
  return stdout.trim().split("\n").pop()!;
}

/** cloud-config that writes a file and prints it, with the hostname, on the serial console. */
function userdata(note: string) {
  return [
    "#cloud-config",
    "write_files:",
    "  - path: /etc/tsd-note",
    `    content: "${note}"`,
    "runcmd:",
    `  - [sh, -c, 'echo "TSD-MARKER host=$(hostname) note=$(cat /etc/tsd-note)" >/dev/ttyS0']`,
    "",
  ].join("\n");
}

/** Reads the tail of every dnsmasq log in the agent's directory, to tell DHCP failures apart. */
function dnsmasqLogs(agentDir: string) {
  return readdirSync(agentDir, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith("dnsmasq.log"))
    .map((file) => `${file}:\n${readFileSync(join(agentDir, file), "utf8").slice(-3000)}`)
    .join("\n");
}

describe("Debian 12 cloud image with cloud-init", () => {
  let t: TestServer | undefined;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>> | undefined;
  let vm: Vm | undefined;
  let expunged = false;

  const consoleLog = async (uuid: string) =>
    (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid } })).console;

  beforeAll(async () => {
    const started = performance.now();
    const image = await debianImage();
    console.log(`Debian image ready in ${Math.round(performance.now() - started)} ms: ${image}`);

    t = await startTestServer("sqlite");
    admin = t.admin;
    cloud = await buildCloud(t, CIDR, image);
  }, 900_000);

  // Destroying and expunging through the API removes the VM's QEMU, tap and disks. The cloud's
  // cleanup then removes the host, bridge and temp dirs, however far the test got.
  afterAll(async () => {
    if (vm && !expunged) {
      await admin.call("destroyVmInstance", { path: { uuid: vm.uuid } }).catch(console.error);
      await admin
        .call("expungeVmInstance", { path: { uuid: vm.uuid }, params: {} })
        .catch(console.error);
    }

    await cloud?.cleanup();
    await t?.stop();
  }, 120_000);

  // NOTE: one run in nine on a shared machine saw the guest's dhclient get no lease in 60 s,
  // cause unknown; the failure message carries the console and dnsmasq logs. One retry.
  it("boots, takes its hostname and runs its user data", {
    retry: 1,
    timeout: 420_000,
  }, async () => {
    const note = `note-${randomBytes(4).toString("hex")}`;
    const offering = (
      await admin.call<{ inventory: { uuid: string } }>("createInstanceOffering", {
        params: { name: "tsd-debian", cpuNum: 1, memorySize: 512 * 1024 * 1024 },
      })
    ).inventory;

    const started = performance.now();
    vm = (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name: "tsd-debian",
          imageUuid: cloud!.imageUuid,
          instanceOfferingUuid: offering.uuid,
          l3NetworkUuids: [cloud!.l3NetworkUuid],
        },
        systemTags: [
          "hostname::tsd-debian",
          `userdata::${Buffer.from(userdata(note)).toString("base64")}`,
        ],
      })
    ).inventory;
    expect(vm.state).toBe("Running");
    const created = performance.now();

    let log = "";
    const deadline = Date.now() + BOOT_TIMEOUT_MS;

    while (!MARKER.test(log) && Date.now() < deadline) {
      await new Promise((done) => setTimeout(done, 2000));
      log = await consoleLog(vm.uuid);
    }

    const finished = performance.now();
    console.log(
      `createVmInstance took ${Math.round(created - started)} ms; ` +
        `marker ${Math.round(finished - created)} ms after it returned`,
    );

    const marker = MARKER.exec(log);
    const context = `console:\n${log.slice(-6000)}\n${dnsmasqLogs(cloud!.agentDir)}`;
    expect(marker, `no marker within ${BOOT_TIMEOUT_MS} ms; ${context}`).not.toBeNull();
    expect(marker![1]).toBe("tsd-debian");
    expect(marker![2]).toBe(note);
  });

  it("destroys and expunges the VM", async () => {
    expect(vm).toBeDefined();
    await admin.call("destroyVmInstance", { path: { uuid: vm!.uuid } });
    await admin.call("expungeVmInstance", { path: { uuid: vm!.uuid }, params: {} });
    expunged = true;

    expect((await admin.query("queryVmInstance", [`uuid=${vm!.uuid}`])).inventories).toEqual([]);
  }, 120_000);
});
