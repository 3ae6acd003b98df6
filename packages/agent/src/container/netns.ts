import { stat } from "node:fs/promises";
import { run } from "../exec.js";
import type { Reverter } from "../reverter.js";
import { ValidationError } from "../validate.js";
import type { ResolvedContainerSpec } from "./spec.js";

/** Path of a named network namespace, as `ip netns add` makes it. */
export function netnsPath(name: string) {
  return `/run/netns/${name}`;
}

/**
 * Creates the container's network namespace and one veth pair per NIC. The host end, named like
 * a VM's tap, joins the bridge, so DHCP and security group rules see it where they see a tap;
 * the container end is `eth<index>` with the NIC's MAC and, if given, its static address.
 */
export async function createContainerNetwork(
  spec: ResolvedContainerSpec,
  netns: string,
  reverter: Reverter,
) {
  if (await stat(netnsPath(netns)).catch(() => undefined)) {
    throw new ValidationError(
      `network namespace ${netns} already exists: another container uses it, or destroy this VM first`,
    );
  }

  await run("ip", ["netns", "add", netns]);
  reverter.add(`network namespace ${netns}`, () => deleteNetns(netns));
  await run("ip", ["-n", netns, "link", "set", "dev", "lo", "up"]);

  for (const [index, nic] of spec.nics.entries()) {
    if (await linkExists(nic.tapName)) {
      throw new ValidationError(
        `network device ${nic.tapName} already exists: another VM uses it, or destroy this VM first`,
      );
    }

    const inner = `eth${index}`;
    await run("ip", [
      "link",
      "add",
      nic.tapName,
      "type",
      "veth",
      "peer",
      "name",
      inner,
      "netns",
      netns,
    ]);
    reverter.add(`veth ${nic.tapName}`, () => deleteLink(nic.tapName));
    await run("ip", ["-n", netns, "link", "set", "dev", inner, "address", nic.mac]);
    await run("ip", ["link", "set", "dev", nic.tapName, "master", nic.bridgeName, "up"]);
    await run("ip", ["-n", netns, "link", "set", "dev", inner, "up"]);

    if (nic.ipv4) {
      await run("ip", ["-n", netns, "address", "add", nic.ipv4.address, "dev", inner]);
    }

    if (nic.ipv4?.gateway && !spec.nics.slice(0, index).some((earlier) => earlier.ipv4?.gateway)) {
      await run("ip", [
        "-n",
        netns,
        "route",
        "add",
        "default",
        "via",
        nic.ipv4.gateway,
        "dev",
        inner,
      ]);
    }
  }
}

/** Deletes the veth host ends and the namespace; parts already gone count as deleted. */
export async function deleteContainerNetwork(spec: ResolvedContainerSpec, netns: string) {
  for (const nic of spec.nics) {
    await deleteLink(nic.tapName);
  }

  await deleteNetns(netns);
}

async function deleteNetns(netns: string) {
  await run("ip", ["netns", "delete", netns], { okExitCodes: [1] });
}

async function linkExists(name: string) {
  const result = await run("ip", ["link", "show", "dev", name], { okExitCodes: [1] });
  return result.exitCode === 0;
}

async function deleteLink(name: string) {
  if (await linkExists(name)) {
    await run("ip", ["link", "delete", "dev", name]);
  }
}
