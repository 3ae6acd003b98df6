/**
 * A VXLAN L2 network across two hosts, end to end through the REST API: two network namespaces
 * added as KVM hosts over SSH, each running its own agent, dnsmasq and QEMU (TCG) guest. The
 * guests get their addresses from their own host's DHCP server, run their userdata, reach each
 * other across the VXLAN tunnel, and a security group then lets only TCP port 22 through.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FLAT_PROVIDER, guestImage, serveFile } from "./cloud.js";
import { startTestServer, type TestServer } from "./harness.js";
import { createNamespaceHosts } from "./namespace-hosts.js";

type Inventory = Record<string, unknown> & { uuid: string };

const SG_PROVIDER = "536fa586acb4ee94e96aa6fec701c94e";
const MANAGEMENT = "10.251.77";
const UNDERLAY = "10.251.78";
const GUEST_IPS = ["10.251.79.50", "10.251.79.51"];
const VNI = 4242;
const AGENT_PORT = 7070;
const BOOT_DEADLINE_MS = 180_000;
const TEST_TIMEOUT_MS = 600_000;

/**
 * Builds the guests' userdata. It prints a marker and serves a greeting on TCP port 22. Then,
 * every second, it pings the peer with a small and a large packet and opens a TCP connection to
 * the peer's port 22, printing each result on the console.
 */
function userdata(peer: string) {
  return [
    "#!/bin/sh",
    'echo "TVX-USERDATA ran on $(hostname)" >/dev/console',
    `printf '#!/bin/sh\\necho TVX-HELLO\\n' >/run/hello`,
    "chmod 755 /run/hello",
    "nc -ll -p 22 -e /run/hello </dev/null >/dev/null 2>&1 &",
    "(while true; do",
    `  if ping -c 1 -W 1 ${peer} >/dev/null 2>&1; then r=ok; else r=fail; fi`,
    '  echo "TVX-PING $r" >/dev/console',
    // 1460 bytes of data make a 1488-byte packet, which fits a 1500-byte link but not the tunnel.
    `  if ping -c 1 -W 1 -s 1460 ${peer} >/dev/null 2>&1; then r=ok; else r=fail; fi`,
    '  echo "TVX-BIGPING $r" >/dev/console',
    // NOTE: in one loaded run the loop printed nothing more once the security group applied,
    // most likely with nc waiting on a cut connection (not confirmed), so timeout bounds it.
    `  if timeout 5 nc -w 2 ${peer} 22 </dev/null 2>/dev/null | grep -q TVX-HELLO; then r=ok; else r=fail; fi`,
    '  echo "TVX-TCP $r" >/dev/console',
    "  sleep 1",
    "done) </dev/null >/dev/null 2>&1 &",
    "",
  ].join("\n");
}

function inNamespace(namespace: string, command: string, args: string[]) {
  return execFileSync("ip", ["netns", "exec", namespace, command, ...args], { encoding: "utf8" });
}

/** Pids of tstack agents in a namespace. */
function agentsIn(namespace: string) {
  const pids = execFileSync("ip", ["netns", "pids", namespace], { encoding: "utf8" });
  return pids
    .split("\n")
    .filter(Boolean)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("dist/main.js");
      } catch {
        return false;
      }
    });
}

describe("VXLAN network across two namespace hosts", () => {
  let t: TestServer;
  let admin: TstackClient;
  let lab: Awaited<ReturnType<typeof createNamespaceHosts>>;
  const hostUuids: string[] = [];
  let l3: Inventory;
  let storeUuid = "";
  const vms: Inventory[] = [];

  const create = async (api: string, params: object, path?: object) =>
    (
      await admin.call<{ inventory: Inventory }>(api, {
        params: params as Record<string, unknown>,
        path: path as Record<string, string>,
      })
    ).inventory;

  const consoleLog = async (vmUuid: string) =>
    (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid: vmUuid } })).console;

  /** Waits until `text` appears on the VM's console after `offset` and returns the log's length. */
  async function waitForConsole(vmUuid: string, text: string, offset = 0) {
    const deadline = Date.now() + BOOT_DEADLINE_MS;
    let log = "";

    while (Date.now() < deadline) {
      log = await consoleLog(vmUuid);

      if (log.slice(offset).includes(text)) {
        return log.length;
      }

      await new Promise((resolve) => setTimeout(resolve, 1000));
    }

    throw new Error(`no '${text}' after offset ${offset} on ${vmUuid}'s console:\n${log}`);
  }

  beforeAll(async () => {
    lab = await createNamespaceHosts(MANAGEMENT, UNDERLAY);
    t = await startTestServer("sqlite", { host: `${MANAGEMENT}.1` });
    admin = t.admin;

    for (const [name, value] of [
      ["agent.dataDir", lab.agentDataDir],
      ["agent.port", String(AGENT_PORT)],
    ]) {
      await admin.call("updateGlobalConfig", {
        path: { category: "host", name: name! },
        params: { value },
      });
    }

    const zone = await create("createZone", { name: "tvx" });
    const cluster = await create("createCluster", {
      zoneUuid: zone.uuid,
      name: "kvm",
      hypervisorType: "KVM",
    });

    const addHost = async (index: number) => {
      const added = await create("addKVMHost", {
        name: `tvx-host${index + 1}`,
        managementIp: lab.hosts[index]!.managementIp,
        username: "root",
        sshKey: lab.sshKey,
        clusterUuid: cluster.uuid,
      });
      hostUuids.push(added.uuid);
    };
    await addHost(0);

    // The image store lives on the first host, and the second host copies the image from it.
    const store = await create("addImageStoreBackupStorage", {
      name: "store",
      url: join(lab.hostDir, "store"),
      hostname: lab.hosts[0]!.managementIp,
    });
    storeUuid = store.uuid;
    await admin.call("attachBackupStorageToZone", {
      path: { zoneUuid: zone.uuid, backupStorageUuid: store.uuid },
    });
    const served = await serveFile(guestImage(), `${MANAGEMENT}.1`);
    const image = await create("addImage", {
      name: "guest",
      url: served.url,
      format: "qcow2",
      mediaType: "RootVolumeTemplate",
      backupStorageUuids: [store.uuid],
    }).finally(() => served.close());

    const primary = await create("addLocalPrimaryStorage", {
      name: "local",
      url: join(lab.hostDir, "primary"),
      zoneUuid: zone.uuid,
    });
    await admin.call("attachPrimaryStorageToCluster", {
      path: { clusterUuid: cluster.uuid, primaryStorageUuid: primary.uuid },
    });

    const pool = await create("createL2VxlanNetworkPool", {
      name: "pool",
      zoneUuid: zone.uuid,
      vtepCidr: `${UNDERLAY}.0/24`,
    });
    await create(
      "createVniRange",
      { name: "vnis", startVni: VNI, endVni: VNI + 9 },
      {
        l2NetworkUuid: pool.uuid,
      },
    );
    await admin.call("attachL2NetworkToCluster", {
      path: { l2NetworkUuid: pool.uuid, clusterUuid: cluster.uuid },
    });
    const vxlan = await create("createL2VxlanNetwork", {
      name: "vx",
      zoneUuid: zone.uuid,
      poolUuid: pool.uuid,
    });
    l3 = await create("createL3Network", {
      name: "tenant",
      l2NetworkUuid: vxlan.uuid,
      category: "Private",
    });
    await admin.call("addIpRangeByNetworkCidr", {
      path: { l3NetworkUuid: l3.uuid },
      params: { name: "range", networkCidr: "10.251.79.0/24" },
    });
    await admin.call("attachNetworkServiceToL3Network", {
      path: { l3NetworkUuid: l3.uuid },
      params: {
        networkServices: {
          [FLAT_PROVIDER]: ["DHCP", "DNS", "Userdata"],
          [SG_PROVIDER]: ["SecurityGroup"],
        },
      },
    });

    const offering = await create("createInstanceOffering", {
      name: "small",
      cpuNum: 1,
      memorySize: 128 * 1024 * 1024,
    });

    const createVm = async (index: number) => {
      const reply = await admin.call<{ inventory: Inventory }>("createVmInstance", {
        params: {
          name: `tvx-vm${index + 1}`,
          imageUuid: image.uuid,
          instanceOfferingUuid: offering.uuid,
          l3NetworkUuids: [l3.uuid],
          hostUuid: hostUuids[index],
        },
        systemTags: [
          `staticIp::${l3.uuid}::${GUEST_IPS[index]}`,
          `userdata::${Buffer.from(userdata(GUEST_IPS[1 - index]!)).toString("base64")}`,
        ],
      });
      vms.push(reply.inventory);
    };

    // The second host joins after the pool is attached and the first VM runs, so its VTEP must
    // reach the first host's replication list when it connects.
    await createVm(0);
    // Local primary storage reaches the host that joins later when it connects.
    await addHost(1);
    await createVm(1);
  }, 600_000);

  afterAll(async () => {
    await t?.stop();
    await lab?.cleanup();
    expect(lab ? lab.leftovers() : []).toEqual([]);
  });

  it("pins the VMs and records VTEPs", async () => {
    expect(vms.map((vm) => vm.hostUuid)).toEqual(hostUuids);

    const vteps = await t.server.core.kysely
      .selectFrom("vteps")
      .select(["hostUuid", "vtepIp"])
      .orderBy("vtepIp")
      .execute();
    expect(vteps).toEqual(
      lab.hosts.map((host, index) => ({ hostUuid: hostUuids[index], vtepIp: host.vtepIp })),
    );
  });

  it(
    "leases each guest's address from its own host",
    async () => {
      const nics = (await admin.query<Inventory>("queryVmNic", [`l3NetworkUuid=${l3.uuid}`]))
        .inventories;

      for (const [index, vm] of vms.entries()) {
        const nic = nics.find((candidate) => candidate.vmInstanceUuid === vm.uuid)!;
        expect(nic.ip).toBe(GUEST_IPS[index]);
        await waitForConsole(vm.uuid, `TSTACK-GUEST: ip=${GUEST_IPS[index]}`);
        await waitForConsole(vm.uuid, "TVX-USERDATA ran on");
        await waitForConsole(vm.uuid, "TSTACK-GUEST: userdata-ok");

        // Each host's dnsmasq has the reservation of its own VM only.
        const hostsFile = readFileSync(
          join(lab.hosts[index]!.root, "data", "network", "l3", l3.uuid, "dhcp-hosts"),
          "utf8",
        );
        const other = nics.find((candidate) => candidate.vmInstanceUuid !== vm.uuid)!;
        expect(hostsFile).toContain(String(nic.mac));
        expect(hostsFile).not.toContain(String(other.mac));
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "connects the guests across the VXLAN tunnel",
    async () => {
      for (const vm of vms) {
        await waitForConsole(vm.uuid, "TVX-PING ok");
        await waitForConsole(vm.uuid, "TVX-TCP ok");
        await waitForConsole(vm.uuid, "TVX-BIGPING ok");
      }

      const nics = (await admin.query<Inventory>("queryVmNic", [`l3NetworkUuid=${l3.uuid}`]))
        .inventories;

      for (const [index, host] of lab.hosts.entries()) {
        const peer = lab.hosts[1 - index]!;
        const peerVm = vms[1 - index]!;
        const peerMac = String(nics.find((nic) => nic.vmInstanceUuid === peerVm.uuid)!.mac);

        const link = JSON.parse(
          inNamespace(host.namespace, "ip", ["-d", "-j", "link", "show", "dev", `vx${VNI}`]),
        )[0];
        expect(link.linkinfo.info_data.local).toBe(host.vtepIp);
        expect(link.linkinfo.info_data.id).toBe(VNI);

        const fdb = JSON.parse(
          inNamespace(host.namespace, "bridge", ["-j", "fdb", "show", "dev", `vx${VNI}`]),
        ) as { mac: string; dst?: string }[];
        const flood = fdb.filter((entry) => entry.mac === "00:00:00:00:00:00");
        expect(flood.map((entry) => entry.dst)).toEqual([peer.vtepIp]);
        expect(fdb).toContainEqual(expect.objectContaining({ mac: peerMac, dst: peer.vtepIp }));
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "lets only TCP port 22 through a security group",
    async () => {
      const offsets = await Promise.all(vms.map(async (vm) => (await consoleLog(vm.uuid)).length));
      const nics = (await admin.query<Inventory>("queryVmNic", [`l3NetworkUuid=${l3.uuid}`]))
        .inventories;
      const group = await create("createSecurityGroup", { name: "ssh-only" });
      await create(
        "attachSecurityGroupToL3Network",
        {},
        {
          securityGroupUuid: group.uuid,
          l3NetworkUuid: l3.uuid,
        },
      );
      await create(
        "addSecurityGroupRule",
        {
          rules: [{ type: "Ingress", protocol: "TCP", startPort: 22 }],
        },
        { securityGroupUuid: group.uuid },
      );
      await create(
        "addVmNicToSecurityGroup",
        { vmNicUuids: nics.map((nic) => nic.uuid) },
        {
          securityGroupUuid: group.uuid,
        },
      );

      for (const [index, vm] of vms.entries()) {
        const failed = await waitForConsole(vm.uuid, "TVX-PING fail", offsets[index]);
        await waitForConsole(vm.uuid, "TVX-TCP ok", failed);
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "cleans up devices, agents and VTEPs",
    async () => {
      for (const vm of vms) {
        await admin.call("destroyVmInstance", { path: { uuid: vm.uuid } });
        await admin.call("expungeVmInstance", { path: { uuid: vm.uuid }, params: {} });
      }

      for (const host of lab.hosts) {
        const links = execFileSync("ip", ["-n", host.namespace, "-br", "link", "show"], {
          encoding: "utf8",
        });
        expect(links).not.toContain(`vx${VNI}`);
        expect(links).not.toContain(`br_`);
      }

      // The image store lives on the first host, which cannot go before it.
      await admin.call("deleteBackupStorage", {
        path: { uuid: storeUuid },
        query: { deleteMode: "Enforcing" },
      });

      for (const hostUuid of hostUuids) {
        await admin.call("deleteHost", { path: { uuid: hostUuid } });
      }

      const vteps = await t.server.core.kysely.selectFrom("vteps").selectAll().execute();
      expect(vteps).toEqual([]);

      for (const host of lab.hosts) {
        expect(agentsIn(host.namespace)).toEqual([]);
      }
    },
    TEST_TIMEOUT_MS,
  );
});
