import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBusyboxTarball } from "../../agent/src/container/testbed.js";
import { runningAgentPid } from "../src/compute/hosts/local.js";
import { buildCloud, guestImage, serveFile } from "./cloud.js";
import { freePort, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

const SG_PROVIDER = "536fa586acb4ee94e96aa6fec701c94e";
const FLAT = "f1b7a78b680fb97d45b686eac3a16d98";
const PREFIX = "tct";
const SUBNET = "172.30.93";
const CONTAINER_IP = `${SUBNET}.60`;
const VM_IP = `${SUBNET}.61`;
const PEER_IP = `${SUBNET}.253`;
const PEER_NETNS = `tctpeer${process.pid}`;
const PEER_VETH = `tctv${process.pid}`;

function quiet(command: string, args: string[]) {
  try {
    execFileSync(command, args, { stdio: "ignore" });
  } catch {
    // Already gone.
  }
}

/** Pings from the peer namespace on the L3's bridge; true when the echo reply came back. */
function peerPings(address: string) {
  try {
    execFileSync("ip", ["netns", "exec", PEER_NETNS, "ping", "-c", "1", "-W", "2", address], {
      stdio: "ignore",
    });
    return true;
  } catch {
    return false;
  }
}

async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 30_000) {
  const deadline = Date.now() + ms;

  while (Date.now() < deadline) {
    if (await check()) {
      return;
    }

    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Removes the containers a failed test may have left: runc state, overlay mounts, namespaces. */
function removeContainersUnder(agentDir: string) {
  const dir = join(agentDir, "containers");

  for (const uuid of existsSync(dir) ? readdirSync(dir) : []) {
    quiet("runc", ["--root", join(agentDir, "runc"), "delete", "--force", `${PREFIX}${uuid}`]);
    quiet("umount", [join(dir, uuid, "rootfs")]);
    quiet("ip", ["netns", "delete", `${PREFIX}${uuid}`]);
  }
}

// The container's init pings the VM once a second and prints the result to its console.
const CONTAINER_PINGER = [
  "(while true; do",
  `  if ping -c 1 -W 1 ${VM_IP} >/dev/null 2>&1; then r=ok; else r=fail; fi`,
  '  echo "TCT-PING $r"',
  "  sleep 1",
  "done) &",
].join("\n");

// The VM's userdata does the same towards the container, on the serial console.
const VM_PINGER = [
  "#!/bin/sh",
  "(while true; do",
  `  if ping -c 1 -W 1 ${CONTAINER_IP} >/dev/null 2>&1; then r=ok; else r=fail; fi`,
  '  echo "TCT-VM-PING $r" >/dev/console',
  "  sleep 1",
  "done) </dev/null >/dev/null 2>&1 &",
  "",
].join("\n");

/**
 * Adds this machine a second time, as 127.0.0.2 in a new KVM cluster of the cloud's zone with
 * its own agent, and attaches the cloud's L2 network and primary storage to that cluster.
 */
async function addKvmHost(admin: TstackClient, cloud: Awaited<ReturnType<typeof buildCloud>>) {
  const agentDir = mkdtempSync(join(tmpdir(), "tct-agent-"));
  await admin.call("updateGlobalConfig", {
    path: { category: "host", name: "agent.dataDir" },
    params: { value: agentDir },
  });
  await admin.call("updateGlobalConfig", {
    path: { category: "host", name: "agent.port" },
    params: { value: String(await freePort()) },
  });
  const cluster = (
    await admin.call<{ inventory: Inventory }>("createCluster", {
      params: { zoneUuid: cloud.zoneUuid, name: "kvm", hypervisorType: "KVM" },
    })
  ).inventory;
  const host = (
    await admin.call<{ inventory: Inventory }>("addKVMHost", {
      params: {
        name: "kvm",
        managementIp: "127.0.0.2",
        username: "root",
        clusterUuid: cluster.uuid,
      },
    })
  ).inventory;
  // The image cache on this host downloads from the image store's agent on 127.0.0.1.
  execFileSync("cp", [join(cloud.agentDir, "storage-policy.json"), agentDir]);
  await admin.call("attachL2NetworkToCluster", {
    path: { l2NetworkUuid: cloud.l2NetworkUuid, clusterUuid: cluster.uuid },
  });
  await admin.call("attachPrimaryStorageToCluster", {
    path: { clusterUuid: cluster.uuid, primaryStorageUuid: cloud.primaryStorageUuid },
  });
  return { agentDir, hostUuid: host.uuid };
}

describe("containers on a Container host", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;
  let work: string;
  let vm: Inventory;
  let kvm: { agentDir: string; hostUuid: string } | undefined;
  let guest: Inventory;

  const consoleLog = async () =>
    (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid: vm.uuid } })).console;
  const vmState = async () =>
    (await admin.query<Inventory>("queryVmInstance", [`uuid=${vm.uuid}`])).inventories[0]!.state;
  const action = (name: string, params: Record<string, unknown> = {}) =>
    admin.call(name, { path: { uuid: vm.uuid }, params });

  beforeAll(async () => {
    // The agent the test server spawns inherits the environment, so its names start with tct.
    process.env.TSTACK_AGENT_CONTAINER_PREFIX = PREFIX;
    process.env.TSTACK_AGENT_NETNS_PREFIX = PREFIX;
    work = mkdtempSync(join(tmpdir(), "tct-e2e-"));
    const tarPath = await buildBusyboxTarball(work, CONTAINER_PINGER);
    t = await startTestServer("sqlite");
    admin = t.admin;
    cloud = await buildCloud(t, `${SUBNET}.0/24`, tarPath, "Container");
    await admin.call("attachNetworkServiceToL3Network", {
      path: { l3NetworkUuid: cloud.l3NetworkUuid },
      params: { networkServices: { [SG_PROVIDER]: ["SecurityGroup"], [FLAT]: ["DHCP"] } },
    });
  }, 300_000);

  afterAll(async () => {
    if (cloud) {
      removeContainersUnder(cloud.agentDir);
      await cloud.cleanup();
    }

    if (kvm) {
      const pid = runningAgentPid(kvm.agentDir);

      if (pid) {
        process.kill(pid, "SIGKILL");
      }

      rmSync(kvm.agentDir, { recursive: true, force: true });
    }

    await t?.stop();
    quiet("ip", ["netns", "delete", PEER_NETNS]);
    quiet("ip", ["link", "delete", PEER_VETH]);
    rmSync(work, { recursive: true, force: true });
    delete process.env.TSTACK_AGENT_CONTAINER_PREFIX;
  });

  it("stores a tarball image as tar", async () => {
    const image = (await admin.query<Inventory>("queryImage", [`uuid=${cloud.imageUuid}`]))
      .inventories[0]!;

    expect(image.format).toBe("tar");
    expect(image.status).toBe("Ready");
  });

  it("creates a running container", async () => {
    const reply = await admin.call<{ inventory: Inventory }>("createVmInstance", {
      params: {
        name: "tct-ct1",
        imageUuid: cloud.imageUuid,
        instanceOfferingUuid: cloud.instanceOfferingUuid,
        l3NetworkUuids: [cloud.l3NetworkUuid],
      },
      systemTags: [`staticIp::${cloud.l3NetworkUuid}::${CONTAINER_IP}`],
    });
    vm = reply.inventory;

    expect(vm.hypervisorType).toBe("Container");
    expect(vm.state).toBe("Running");
    expect(vm.hostUuid).toBe(cloud.hostUuid);
  }, 120_000);

  it("shows the memory limit on the console", async () => {
    await eventually("the boot line", async () => (await consoleLog()).includes("TCT-BOOT"));

    expect(await consoleLog()).toContain(`mem=${128 * 1024 * 1024}`);
  });

  it("pings a TCG VM on the same L3", async () => {
    kvm = await addKvmHost(admin, cloud);
    const served = await serveFile(guestImage());
    const image = (
      await admin.call<{ inventory: Inventory }>("addImage", {
        params: {
          name: "guest",
          url: served.url,
          format: "qcow2",
          mediaType: "RootVolumeTemplate",
          backupStorageUuids: [
            (await admin.query<Inventory>("queryBackupStorage")).inventories[0]!.uuid,
          ],
        },
      })
    ).inventory;
    await served.close();
    guest = (
      await admin.call<{ inventory: Inventory }>("createVmInstance", {
        params: {
          name: "tct-vm",
          imageUuid: image.uuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
        systemTags: [
          `staticIp::${cloud.l3NetworkUuid}::${VM_IP}`,
          `userdata::${Buffer.from(VM_PINGER).toString("base64")}`,
        ],
      })
    ).inventory;
    const guestConsole = async () =>
      (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid: guest.uuid } }))
        .console;

    expect(guest.hypervisorType).toBe("KVM");
    expect(guest.hostUuid).toBe(kvm.hostUuid);
    await eventually(
      "the VM's ping",
      async () => (await guestConsole()).includes("TCT-VM-PING ok"),
      240_000,
    );
    await eventually(
      "the container's ping",
      async () => (await consoleLog()).includes("TCT-PING ok"),
      60_000,
    );

    await admin.call("destroyVmInstance", { path: { uuid: guest.uuid } });
    await admin.call("expungeVmInstance", { path: { uuid: guest.uuid }, params: {} });
  }, 400_000);

  it("answers pings on the L3 network", async () => {
    const nic = (await admin.query<Inventory>("queryVmNic", [`vmInstanceUuid=${vm.uuid}`]))
      .inventories[0]!;
    const bridge = `br_${cloud.l2NetworkUuid.slice(0, 12)}`;
    execFileSync("ip", ["netns", "add", PEER_NETNS]);
    execFileSync("ip", [
      ...["link", "add", PEER_VETH, "type", "veth"],
      ...["peer", "name", "eth0", "netns", PEER_NETNS],
    ]);
    execFileSync("ip", ["link", "set", PEER_VETH, "master", bridge, "up"]);
    execFileSync("ip", ["-n", PEER_NETNS, "address", "add", `${PEER_IP}/24`, "dev", "eth0"]);
    execFileSync("ip", ["-n", PEER_NETNS, "link", "set", "eth0", "up"]);

    expect(nic.ip).toBe(CONTAINER_IP);
    expect(
      execFileSync("ip", ["-o", "link", "show", "master", bridge], { encoding: "utf8" }),
    ).toContain(`tap${String(nic.uuid).slice(0, 12)}`);
    await eventually("a ping reply", () => peerPings(CONTAINER_IP));
  });

  it("filters pings with a security group", async () => {
    const nic = (await admin.query<Inventory>("queryVmNic", [`vmInstanceUuid=${vm.uuid}`]))
      .inventories[0]!;
    const group = (
      await admin.call<{ inventory: Inventory }>("createSecurityGroup", {
        params: { name: "tct-sg" },
      })
    ).inventory;
    await admin.call("attachSecurityGroupToL3Network", {
      path: { securityGroupUuid: group.uuid, l3NetworkUuid: cloud.l3NetworkUuid },
      params: {},
    });
    await admin.call("addVmNicToSecurityGroup", {
      path: { securityGroupUuid: group.uuid },
      params: { vmNicUuids: [nic.uuid] },
    });

    // Ingress is dropped by default once the NIC is in a group.
    await eventually("pings to be dropped", () => !peerPings(CONTAINER_IP));

    await admin.call("addSecurityGroupRule", {
      path: { securityGroupUuid: group.uuid },
      params: { rules: [{ type: "Ingress", protocol: "ICMP", allowedCidr: `${SUBNET}.0/24` }] },
    });

    await eventually("pings to pass again", () => peerPings(CONTAINER_IP));
    await admin.call("deleteSecurityGroup", { path: { uuid: group.uuid } });
  }, 120_000);

  it("pauses and resumes", async () => {
    await action("pauseVmInstance");
    expect(await vmState()).toBe("Paused");
    expect(peerPings(CONTAINER_IP)).toBe(true);

    await action("resumeVmInstance");
    expect(await vmState()).toBe("Running");
  });

  it("stops and starts again", async () => {
    await action("stopVmInstance");
    expect(await vmState()).toBe("Stopped");
    expect(await consoleLog()).toContain("TCT-TERM");
    expect(peerPings(CONTAINER_IP)).toBe(false);

    await action("startVmInstance");
    expect(await vmState()).toBe("Running");
    await eventually("a ping reply", () => peerPings(CONTAINER_IP));
  }, 120_000);

  it("survives an agent restart", async () => {
    const initPid = () =>
      (
        JSON.parse(
          execFileSync(
            "runc",
            ["--root", join(cloud.agentDir, "runc"), "state", `${PREFIX}${vm.uuid}`],
            { encoding: "utf8" },
          ),
        ) as { pid: number }
      ).pid;
    const before = initPid();
    // The KVM host's test changed the agent directory setting, and reconnect reads it.
    await admin.call("updateGlobalConfig", {
      path: { category: "host", name: "agent.dataDir" },
      params: { value: cloud.agentDir },
    });

    await admin.call("reconnectHost", { path: { uuid: cloud.hostUuid } });

    expect(initPid()).toBe(before);
    expect(await vmState()).toBe("Running");
    await action("pauseVmInstance");
    expect(await vmState()).toBe("Paused");
    await action("resumeVmInstance");
    await eventually("a ping reply", () => peerPings(CONTAINER_IP));
  }, 120_000);

  it("reboots into a fresh init", async () => {
    const before = execFileSync(
      "runc",
      ["--root", join(cloud.agentDir, "runc"), "state", `${PREFIX}${vm.uuid}`],
      { encoding: "utf8" },
    );

    await action("rebootVmInstance");

    const after = execFileSync(
      "runc",
      ["--root", join(cloud.agentDir, "runc"), "state", `${PREFIX}${vm.uuid}`],
      { encoding: "utf8" },
    );
    expect(await vmState()).toBe("Running");
    expect(JSON.parse(after).pid).not.toBe(JSON.parse(before).pid);
    await eventually("the boot line", async () => (await consoleLog()).includes("TCT-BOOT"));
  }, 120_000);

  it("reports a killed init", async () => {
    const state = execFileSync(
      "runc",
      ["--root", join(cloud.agentDir, "runc"), "state", `${PREFIX}${vm.uuid}`],
      { encoding: "utf8" },
    );
    const pid = (JSON.parse(state) as { pid: number }).pid;

    process.kill(pid, "SIGKILL");

    await eventually("the VM to leave Running", async () => (await vmState()) !== "Running");
    expect(await vmState()).toBe("Stopped");
  }, 60_000);

  it("rolls back a container that fails to start", async () => {
    const host = async () =>
      (await admin.query<Inventory>("queryHost", [`uuid=${cloud.hostUuid}`])).inventories[0]!;
    const before = await host();
    const broken = mkdtempSync(join(work, "broken-"));
    const served = await serveFile(await buildBusyboxTarball(broken, "", "/sbin/missing"));
    const image = (
      await admin.call<{ inventory: Inventory }>("addImage", {
        params: {
          name: "no-init",
          url: served.url,
          format: "tar",
          mediaType: "RootVolumeTemplate",
          backupStorageUuids: [
            (await admin.query<Inventory>("queryBackupStorage")).inventories[0]!.uuid,
          ],
        },
      })
    ).inventory;
    await served.close();

    const failure = await admin
      .call("createVmInstance", {
        params: {
          name: "tct-broken",
          imageUuid: image.uuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
        systemTags: [`staticIp::${cloud.l3NetworkUuid}::${SUBNET}.70`],
      })
      .then(
        () => undefined,
        (error: unknown) => error as Error & { details?: string },
      );

    expect(failure).toBeDefined();
    expect(String(failure?.details ?? failure?.message)).toMatch(/runc run/);
    const after = await host();
    expect(after.availableCpuCapacity).toBe(before.availableCpuCapacity);
    expect(after.availableMemoryCapacity).toBe(before.availableMemoryCapacity);
    const used = await admin.query<Inventory>("queryVmNic", [`ip=${SUBNET}.70`]);
    expect(used.inventories).toEqual([]);
    const left = readdirSync(join(cloud.agentDir, "containers"));
    expect(left).toEqual([vm.uuid]);
    expect(execFileSync("ip", ["netns", "list"], { encoding: "utf8" })).not.toMatch(
      new RegExp(`${PREFIX}(?!${vm.uuid})[0-9a-f]{32}`),
    );
  }, 120_000);

  it("destroys and expunges", async () => {
    await action("startVmInstance");
    await admin.call("destroyVmInstance", { path: { uuid: vm.uuid } });
    expect(await vmState()).toBe("Destroyed");

    await action("expungeVmInstance");
    const left = await admin.query<Inventory>("queryVmInstance", [`uuid=${vm.uuid}`]);
    expect(left.inventories).toEqual([]);
    expect(existsSync(join(cloud.agentDir, "containers", vm.uuid))).toBe(false);
    expect(existsSync(`/run/netns/${PREFIX}${vm.uuid}`)).toBe(false);
  }, 120_000);
});
