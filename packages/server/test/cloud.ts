import { execFileSync } from "node:child_process";
import {
  createReadStream,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { addLocalHost, type TestServer } from "./harness.js";

type Inventory = { uuid: string } & Record<string, unknown>;

function quiet(command: string, args: string[]) {
  try {
    execFileSync(command, args, { stdio: "ignore" });
  } catch {
    // Already gone.
  }
}

function removeLink(name: string) {
  quiet("ip", ["link", "delete", name]);
}

/** Kills processes the test's agent started (QEMU, dnsmasq, metadata server): they name its directory. */
function killProcessesUnder(directory: string) {
  for (const entry of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      if (
        Number(entry) !== process.pid &&
        readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(directory)
      ) {
        process.kill(Number(entry), "SIGKILL");
      }
    } catch {
      // The process ended while we looked.
    }
  }
}

/** The flat network service provider's fixed uuid. */
export const FLAT_PROVIDER = "f1b7a78b680fb97d45b686eac3a16d98";

const ROOT = resolve(import.meta.dirname, "../../..");

/** Builds (or finds in its cache) the busybox test guest and returns its path. */
export function guestImage() {
  return execFileSync("bash", [join(ROOT, "scripts/build-guest-image.sh")], { encoding: "utf8" })
    .trim()
    .split("\n")
    .pop()!;
}

/** Serves one file over HTTP on `host` (127.0.0.1 by default), the way a user's image server would. */
export async function serveFile(path: string, host = "127.0.0.1") {
  const server: Server = createServer((_request, response) => {
    response.writeHead(200, { "content-length": statSync(path).size });
    createReadStream(path).pipe(response);
  });
  await new Promise<void>((done) => server.listen(0, host, done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/guest.qcow2`,
    close: () => new Promise((done) => server.close(done)),
  };
}

/**
 * A small cloud on this machine: the local KVM (or Container) host, an image store and local
 * primary storage in temp dirs, a guest image (the busybox one unless `imagePath` names another
 * qcow2 or a root filesystem tarball), an isolated flat L2 with its own bridge, an L3 with
 * DHCP, DNS and userdata, and an instance offering.
 */
export async function buildCloud(
  t: TestServer,
  cidr: string,
  imagePath?: string,
  hypervisorType: "KVM" | "Container" = "KVM",
) {
  const admin = t.admin;
  const host = await addLocalHost(t, hypervisorType);
  const work = mkdtempSync(join(tmpdir(), "tstack-cloud-"));
  writeFileSync(
    join(host.agentDir, "storage-policy.json"),
    JSON.stringify({ allowLoopback: true }),
  );
  await admin.call("updateGlobalConfig", {
    path: { category: "image", name: "allowLoopbackUrls" },
    params: { value: "true" },
  });

  const bs = (
    await admin.call<{ inventory: Inventory }>("addImageStoreBackupStorage", {
      params: { name: "store", url: join(work, "store"), hostname: "127.0.0.1" },
    })
  ).inventory;
  await admin.call("attachBackupStorageToZone", {
    path: { zoneUuid: host.zoneUuid, backupStorageUuid: bs.uuid },
  });
  const served = await serveFile(imagePath ?? guestImage());
  const image = (
    await admin.call<{ inventory: Inventory }>("addImage", {
      params: {
        name: "guest",
        url: served.url,
        format: "qcow2",
        mediaType: "RootVolumeTemplate",
        backupStorageUuids: [bs.uuid],
      },
    })
  ).inventory;
  await served.close();

  const ps = (
    await admin.call<{ inventory: Inventory }>("addLocalPrimaryStorage", {
      params: { name: "local", url: join(work, "primary"), zoneUuid: host.zoneUuid },
    })
  ).inventory;
  await admin.call("attachPrimaryStorageToCluster", {
    path: { clusterUuid: host.clusterUuid, primaryStorageUuid: ps.uuid },
  });

  const l2 = (
    await admin.call<{ inventory: Inventory }>("createL2NoVlanNetwork", {
      params: { name: "flat", zoneUuid: host.zoneUuid },
    })
  ).inventory;
  await admin.call("attachL2NetworkToCluster", {
    path: { l2NetworkUuid: l2.uuid, clusterUuid: host.clusterUuid },
  });
  const l3 = (
    await admin.call<{ inventory: Inventory }>("createL3Network", {
      params: { name: "private", l2NetworkUuid: l2.uuid, category: "Private" },
    })
  ).inventory;
  await admin.call("addIpRangeByNetworkCidr", {
    path: { l3NetworkUuid: l3.uuid },
    params: { name: "range", networkCidr: cidr },
  });
  await admin.call("attachNetworkServiceToL3Network", {
    path: { l3NetworkUuid: l3.uuid },
    params: { networkServices: { [FLAT_PROVIDER]: ["DHCP", "DNS", "Userdata"] } },
  });

  const offering = (
    await admin.call<{ inventory: Inventory }>("createInstanceOffering", {
      params: { name: "small", cpuNum: 1, memorySize: 128 * 1024 * 1024 },
    })
  ).inventory;

  return {
    ...host,
    imageUuid: image.uuid,
    backupStorageUuid: bs.uuid,
    l3NetworkUuid: l3.uuid,
    l2NetworkUuid: l2.uuid,
    instanceOfferingUuid: offering.uuid,
    primaryStorageUuid: ps.uuid,
    /** Expunges the VMs, stops the agent and removes what a failed test may have left. */
    async cleanup() {
      for (const vm of (await admin.query<Inventory>("queryVmInstance")).inventories) {
        await admin.call("destroyVmInstance", { path: { uuid: vm.uuid } }).catch(() => undefined);
        await admin
          .call("expungeVmInstance", { path: { uuid: vm.uuid }, params: {} })
          .catch(() => undefined);
      }

      await host.cleanup();
      killProcessesUnder(host.agentDir);
      removeLink(`br_${l2.uuid.slice(0, 12)}`);
      removeLink(`dh_${l3.uuid.slice(0, 12)}`);
      const prefix = process.env.TSTACK_AGENT_NETNS_PREFIX ?? "tstack-";
      quiet("ip", ["netns", "delete", `${prefix}dhcp-${l3.uuid.slice(0, 12)}`]);
      rmSync(work, { recursive: true, force: true });
    },
  };
}
