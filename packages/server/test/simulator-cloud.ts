import type { TstackClient } from "@tstack/sdk";
import { FLAT_PROVIDER } from "./cloud.js";
import { startTestServer, type TestServer } from "./harness.js";

type Inventory = { uuid: string } & Record<string, unknown>;

const GiB = 1024 ** 3;

async function create(admin: TstackClient, api: string, params: Record<string, unknown>) {
  return (await admin.call<{ inventory: Inventory }>(api, { params })).inventory;
}

/**
 * Builds a cloud of simulator hosts through the REST API. It has one zone and Simulator cluster
 * with `hosts` hosts, simulator backup storage with an image, and simulator primary storage. Its
 * NoVlan L2 network names an interface no real host has, under an L3 network with flat DHCP.
 */
export async function buildSimulatorCloud(
  admin: TstackClient,
  options: { hosts: number; cidr: string; prefix: string },
) {
  const zone = await create(admin, "createZone", { name: `${options.prefix}-zone` });
  const cluster = await create(admin, "createCluster", {
    zoneUuid: zone.uuid,
    name: `${options.prefix}-cluster`,
    hypervisorType: "Simulator",
  });
  const hostUuids = await Promise.all(
    Array.from({ length: options.hosts }, async (_, index) => {
      const host = await create(admin, "addSimulatorHost", {
        name: `${options.prefix}-host-${index}`,
        managementIp: `${options.prefix}-host-${index}`,
        clusterUuid: cluster.uuid,
        cpuCapacity: 16,
        memoryCapacity: 64 * GiB,
      });
      return host.uuid;
    }),
  );

  const bs = await create(admin, "addSimulatorBackupStorage", {
    name: `${options.prefix}-bs`,
    url: `/${options.prefix}/backup`,
    totalCapacity: 1024 * GiB,
    availableCapacity: 1024 * GiB,
  });
  await admin.call("attachBackupStorageToZone", {
    path: { zoneUuid: zone.uuid, backupStorageUuid: bs.uuid },
  });
  // The simulator never downloads, so the address (TEST-NET-1, RFC 5737) is never contacted.
  const image = await create(admin, "addImage", {
    name: `${options.prefix}-image`,
    url: "http://192.0.2.10/images/guest.qcow2",
    format: "qcow2",
    mediaType: "RootVolumeTemplate",
    backupStorageUuids: [bs.uuid],
  });

  const ps = await create(admin, "addSimulatorPrimaryStorage", {
    name: `${options.prefix}-ps`,
    url: `/${options.prefix}/primary`,
    zoneUuid: zone.uuid,
    totalCapacity: 100_000 * GiB,
    availableCapacity: 100_000 * GiB,
  });
  await admin.call("attachPrimaryStorageToCluster", {
    path: { clusterUuid: cluster.uuid, primaryStorageUuid: ps.uuid },
  });

  const l2 = await create(admin, "createL2NoVlanNetwork", {
    name: `${options.prefix}-l2`,
    zoneUuid: zone.uuid,
    physicalInterface: "tsimeth0",
  });
  await admin.call("attachL2NetworkToCluster", {
    path: { l2NetworkUuid: l2.uuid, clusterUuid: cluster.uuid },
  });
  const l3 = await create(admin, "createL3Network", {
    name: `${options.prefix}-l3`,
    l2NetworkUuid: l2.uuid,
    category: "Private",
  });
  await admin.call("addIpRangeByNetworkCidr", {
    path: { l3NetworkUuid: l3.uuid },
    params: { name: "range", networkCidr: options.cidr },
  });
  await admin.call("attachNetworkServiceToL3Network", {
    path: { l3NetworkUuid: l3.uuid },
    params: { networkServices: { [FLAT_PROVIDER]: ["DHCP", "DNS", "Userdata"] } },
  });
  const offering = await create(admin, "createInstanceOffering", {
    name: `${options.prefix}-small`,
    cpuNum: 1,
    memorySize: 256 * 1024 * 1024,
  });

  return {
    zoneUuid: zone.uuid,
    clusterUuid: cluster.uuid,
    hostUuids,
    backupStorageUuid: bs.uuid,
    primaryStorageUuid: ps.uuid,
    imageUuid: image.uuid,
    l2NetworkUuid: l2.uuid,
    l3NetworkUuid: l3.uuid,
    instanceOfferingUuid: offering.uuid,
  };
}

export type SimulatorCloud = Awaited<ReturnType<typeof buildSimulatorCloud>>;

/**
 * Starts a management node in this process on SQLite and builds a simulator cloud in it, for
 * client tests that need hosts and VMs. Stops the node again when building fails.
 */
export async function startSimulatorCloud(options: {
  hosts: number;
  cidr: string;
  prefix: string;
}): Promise<{ t: TestServer; cloud: SimulatorCloud }> {
  const t = await startTestServer("sqlite");

  try {
    return { t, cloud: await buildSimulatorCloud(t.admin, options) };
  } catch (error) {
    await t.stop();
    throw error;
  }
}
