/**
 * NICs prepared on this machine through the real agent: a NoVlan L2 network with its own bridge,
 * the L3's DHCP namespace, and a "VM" namespace whose veth stands in for the tap and asks for a
 * lease with busybox udhcpc. Every host object is named `tsn-…` (or `br_`/`tap` + a fresh uuid).
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newUuid, now } from "../src/core/ids.js";
import { run } from "../src/drivers/host-tools.js";
import { addLocalHost, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

const FLAT = "f1b7a78b680fb97d45b686eac3a16d98";
const PREFIX = "tsn-";
const id = randomBytes(2).toString("hex");
const VM_NETNS = `tsn-${id}-vm`;
const VM_PORT = `tsn${id}vm`;

const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set dev "$interface" up ;;
  bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    set -- $staticroutes
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    printf 'ip=%s\\nhostname=%s\\nrouter=%s\\n' "$ip" "$hostname" "$router" > "$LEASE_FILE"
    ;;
esac
exit 0
`;

async function namespaces() {
  const { stdout } = await run("ip", ["-j", "netns", "list"]);
  return stdout.trim() === "" ? [] : (JSON.parse(stdout) as { name: string }[]).map((n) => n.name);
}

async function linkExists(name: string) {
  return run("ip", ["link", "show", "dev", name]).then(
    () => true,
    () => false,
  );
}

/** Ends processes in a namespace we created (by PID), then deletes it. */
async function deleteNamespace(name: string) {
  if (!(await namespaces()).includes(name)) {
    return;
  }

  const { stdout } = await run("ip", ["netns", "pids", name]);

  for (const pid of stdout.split("\n").filter(Boolean).map(Number)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // It exited between the listing and the kill.
    }
  }

  await run("ip", ["netns", "delete", name]);
}

describe("VM NICs on the local host through the agent", () => {
  let t: TestServer;
  let host: Awaited<ReturnType<typeof addLocalHost>>;
  let dir = "";
  let l3: Inventory;
  let bridge = "";
  const vmUuid = newUuid();

  beforeAll(async () => {
    // The agent inherits this and names its DHCP namespaces tsn-dhcp-….
    process.env.TSTACK_AGENT_NETNS_PREFIX = PREFIX;
    dir = await mkdtemp(join(tmpdir(), "tsn-"));
    await chmod(dir, 0o755);
    await writeFile(join(dir, "udhcpc.sh"), UDHCPC_SCRIPT, { mode: 0o755 });
    t = await startTestServer("sqlite");
    host = await addLocalHost(t);
  });

  afterAll(async () => {
    await run("ip", ["link", "delete", "dev", VM_PORT]).catch(() => undefined);
    await deleteNamespace(VM_NETNS);

    if (l3) {
      await deleteNamespace(`${PREFIX}dhcp-${l3.uuid.slice(0, 12)}`);
    }

    if (bridge !== "" && (await linkExists(bridge))) {
      await run("ip", ["link", "delete", "dev", bridge]);
    }

    await host?.cleanup();
    await t?.stop();
    await rm(dir, { recursive: true, force: true });
    delete process.env.TSTACK_AGENT_NETNS_PREFIX;
  });

  it("gives the VM namespace its exact lease and userdata, then release removes everything", async () => {
    const admin = t.admin;
    const l2 = (
      await admin.call<{ inventory: Inventory }>("createL2NoVlanNetwork", {
        params: { name: "isolated", zoneUuid: host.zoneUuid },
      })
    ).inventory;
    await admin.call("attachL2NetworkToCluster", {
      path: { l2NetworkUuid: l2.uuid, clusterUuid: host.clusterUuid },
      params: {},
    });
    l3 = (
      await admin.call<{ inventory: Inventory }>("createL3Network", {
        params: { name: "private", l2NetworkUuid: l2.uuid, dnsDomain: "tsn.test" },
      })
    ).inventory;
    const path = { l3NetworkUuid: l3.uuid };
    await admin.call("addIpRangeByNetworkCidr", {
      path,
      params: { name: "r", networkCidr: "10.231.7.0/24" },
    });
    await admin.call("attachNetworkServiceToL3Network", {
      path,
      params: { networkServices: { [FLAT]: ["DHCP", "DNS", "Userdata"] } },
    });

    const core = t.server.core;
    const nics = core.services.nics!;
    const userdata = "#cloud-config\nhostname: tsnvm\n";
    for (const tag of [
      "hostname::tsnvm",
      `userdata::${Buffer.from(userdata).toString("base64")}`,
    ]) {
      await core.kysely
        .insertInto("tags")
        .values({
          uuid: newUuid(),
          resourceUuid: vmUuid,
          resourceType: "VmInstance",
          tag,
          type: "System",
          inherent: 0,
          accountUuid: "36c27e8ff05c4780bf6d2fa65700f22e",
          createDate: now(),
          lastOpDate: now(),
        })
        .execute();
    }
    await core.transact((tx) =>
      nics.allocateNics(tx, {
        vmUuid,
        accountUuid: "36c27e8ff05c4780bf6d2fa65700f22e",
        l3NetworkUuids: [l3.uuid],
        staticIps: {},
      }),
    );

    const [nic] = await nics.prepareNicsOnHost(vmUuid, host.hostUuid);
    bridge = nic!.bridgeName;
    expect(bridge).toBe(`br_${l2.uuid.slice(0, 12)}`);
    expect(nic!.tapName).toBe(`tap${nic!.nicUuid.slice(0, 12)}`);
    expect(nic!.ip).toBe("10.231.7.2");
    expect(await namespaces()).toContain(`${PREFIX}dhcp-${l3.uuid.slice(0, 12)}`);

    // The veth's host end takes the tap's place on the bridge.
    await run("ip", ["netns", "add", VM_NETNS]);
    await run("ip", [
      "link",
      "add",
      VM_PORT,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      VM_NETNS,
    ]);
    await run("ip", ["-n", VM_NETNS, "link", "set", "dev", "eth0", "address", nic!.mac, "up"]);
    await run("ip", ["link", "set", "dev", VM_PORT, "master", bridge, "up"]);

    const leaseFile = join(dir, "lease");
    const result = await run(
      "ip",
      [
        ...["netns", "exec", VM_NETNS, "env", `LEASE_FILE=${leaseFile}`],
        ...["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "2"],
        ...["-O", "staticroutes", "-s", join(dir, "udhcpc.sh")],
      ],
      60_000,
    );
    expect(result.stdout + result.stderr).toMatch(/lease/i);
    const lease = await readFile(leaseFile, "utf8");
    expect(lease).toContain(`ip=${nic!.ip}\n`);
    expect(lease).toContain("hostname=tsnvm\n");
    expect(lease).toContain("router=10.231.7.1\n");

    // busybox wget segfaults on this machine, so the guest's HTTP client is Node's fetch.
    const fetched = await run("ip", [
      ...["netns", "exec", VM_NETNS, process.execPath, "-e"],
      "fetch('http://169.254.169.254/latest/user-data').then(async (r) => process.stdout.write(await r.text()))",
    ]);
    expect(fetched.stdout).toBe(userdata);

    // The VM driver deletes the tap before the NICs are released.
    await run("ip", ["link", "delete", "dev", VM_PORT]);
    await nics.releaseNicsOnHost(vmUuid, host.hostUuid);
    expect(await namespaces()).not.toContain(`${PREFIX}dhcp-${l3.uuid.slice(0, 12)}`);
    expect(await linkExists(bridge)).toBe(false);

    await nics.deleteNics(vmUuid);
    const left = await admin.call<{ inventories: Inventory[] }>("queryVmNic", {
      query: { q: `vmInstanceUuid=${vmUuid}` },
    });
    expect(left.inventories).toHaveLength(0);
  });
});
