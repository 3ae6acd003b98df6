/**
 * Shared mount point primary storage across two hosts made of network namespaces, added over SSH
 * and each running its own agent. A directory both hosts see is one filesystem, so it attaches.
 * A path that each host maps to a directory of its own fails the marker proof.
 */
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ApiRequestError, type TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "./harness.js";
import { createNamespaceHosts } from "./namespace-hosts.js";

type Inventory = Record<string, unknown> & { uuid: string };

const MANAGEMENT = "10.251.87";
const UNDERLAY = "10.251.88";
const AGENT_PORT = 7070;
const SETUP_TIMEOUT_MS = 600_000;

describe("shared mount point across two namespace hosts", () => {
  let t: TestServer;
  let admin: TstackClient;
  let lab: Awaited<ReturnType<typeof createNamespaceHosts>>;
  let zoneUuid = "";
  let clusterUuid = "";

  const create = async (api: string, params: object) =>
    (await admin.call<{ inventory: Inventory }>(api, { params: params as Record<string, unknown> }))
      .inventory;

  const attach = (primaryStorageUuid: string) =>
    admin.call<{ inventory: Inventory }>("attachPrimaryStorageToCluster", {
      path: { clusterUuid, primaryStorageUuid },
    });

  const attachedClusters = async (primaryStorageUuid: string) =>
    (
      await t.server.core.kysely
        .selectFrom("primaryStorageClusterRefs")
        .select("clusterUuid")
        .where("primaryStorageUuid", "=", primaryStorageUuid)
        .execute()
    ).map((row) => row.clusterUuid);

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

    zoneUuid = (await create("createZone", { name: "tsmp" })).uuid;
    clusterUuid = (await create("createCluster", { zoneUuid, name: "kvm", hypervisorType: "KVM" }))
      .uuid;

    for (const [index, host] of lab.hosts.entries()) {
      await create("addKVMHost", {
        name: `tsmp-host${index + 1}`,
        managementIp: host.managementIp,
        username: "root",
        sshKey: lab.sshKey,
        clusterUuid,
      });
    }
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await t?.stop();
    await lab?.cleanup();
    expect(lab ? lab.leftovers() : []).toEqual([]);
  });

  it("attaches a directory both hosts share", async () => {
    const shared = join(lab.dir, "shared");
    mkdirSync(shared, { mode: 0o755 });
    const storage = await create("addSharedMountPointPrimaryStorage", {
      name: "shared",
      url: shared,
      zoneUuid,
    });

    const attached = (await attach(storage.uuid)).inventory;

    expect(await attachedClusters(storage.uuid)).toEqual([clusterUuid]);
    expect(Number(attached.totalCapacity)).toBeGreaterThan(0);
    expect(readdirSync(shared).filter((name) => name.includes("smp-marker"))).toEqual([]);
  });

  it("refuses a path each host keeps apart", async () => {
    // Each host mounts its own directory at lab.hostDir, so this path differs per host.
    const storage = await create("addSharedMountPointPrimaryStorage", {
      name: "apart",
      url: join(lab.hostDir, "smp"),
      zoneUuid,
    });

    const error = await attach(storage.uuid).catch((failure: unknown) => failure);

    expect(error).toBeInstanceOf(ApiRequestError);
    expect(String((error as ApiRequestError).details)).toMatch(
      /is not the filesystem mounted there/,
    );
    expect(await attachedClusters(storage.uuid)).toEqual([]);
  });
});
