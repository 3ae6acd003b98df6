// Builds a cloud of simulator hosts through the REST API for the benchmarks that need one.
/** Runs `work` over `count` items with `limit` in flight. */
export async function pool(count, limit, work) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      await work(next++);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

const GiB = 1024 ** 3;

/**
 * Adds `hostCount` simulator hosts in one Simulator cluster, simulator backup storage with an
 * image, simulator primary storage, a NoVlan L2 and an L3 network with a /16 range, and an
 * instance offering of 1 vCPU and 256 MiB.
 */
export async function buildSimulatorCloud(admin, hostCount) {
  const create = async (api, params) => (await admin.call(api, { params })).inventory;
  const zone = await create("createZone", { name: "bench" });
  const cluster = await create("createCluster", {
    zoneUuid: zone.uuid,
    name: "bench",
    hypervisorType: "Simulator",
  });
  await pool(hostCount, 50, (index) =>
    create("addSimulatorHost", {
      name: `bench-${index}`,
      managementIp: `bench-host-${index}`,
      clusterUuid: cluster.uuid,
      cpuCapacity: 64,
      memoryCapacity: 256 * GiB,
    }),
  );

  const bs = await create("addSimulatorBackupStorage", {
    name: "bench",
    url: "/bench/backup",
    totalCapacity: 1024 * GiB,
    availableCapacity: 1024 * GiB,
  });
  await admin.call("attachBackupStorageToZone", {
    path: { zoneUuid: zone.uuid, backupStorageUuid: bs.uuid },
  });
  // The simulator never downloads, so the address (TEST-NET-1, RFC 5737) is never contacted.
  const image = await create("addImage", {
    name: "bench",
    url: "http://192.0.2.10/images/guest.qcow2",
    format: "qcow2",
    mediaType: "RootVolumeTemplate",
    backupStorageUuids: [bs.uuid],
  });

  const ps = await create("addSimulatorPrimaryStorage", {
    name: "bench",
    url: "/bench/primary",
    zoneUuid: zone.uuid,
    totalCapacity: 1_000_000 * GiB,
    availableCapacity: 1_000_000 * GiB,
  });
  await admin.call("attachPrimaryStorageToCluster", {
    path: { clusterUuid: cluster.uuid, primaryStorageUuid: ps.uuid },
  });

  const l2 = await create("createL2NoVlanNetwork", {
    name: "bench",
    zoneUuid: zone.uuid,
    physicalInterface: "tsimeth0",
  });
  await admin.call("attachL2NetworkToCluster", {
    path: { l2NetworkUuid: l2.uuid, clusterUuid: cluster.uuid },
  });
  const l3 = await create("createL3Network", {
    name: "bench",
    l2NetworkUuid: l2.uuid,
    category: "Private",
  });
  await admin.call("addIpRangeByNetworkCidr", {
    path: { l3NetworkUuid: l3.uuid },
    params: { name: "bench", networkCidr: "10.64.0.0/16" },
  });

  const offering = await create("createInstanceOffering", {
    name: "bench",
    cpuNum: 1,
    memorySize: 256 * 1024 * 1024,
  });
  return { imageUuid: image.uuid, l3NetworkUuid: l3.uuid, instanceOfferingUuid: offering.uuid };
}
