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
 * a VM's tap, joins the bridge, so DHCP and security group rules see it where they see a tap.
 * The container end is `eth<index>` with the NIC's MAC and, if given, its static address.
 * Two `ip -batch` runs do the work, because each `ip` process costs several milliseconds.
 */
export async function createContainerNetwork(
  spec: ResolvedContainerSpec,
  netns: string,
  reverter: Reverter,
) {
  if (await exists(netnsPath(netns))) {
    throw new ValidationError(
      `network namespace ${netns} already exists: another container uses it, or destroy this VM first`,
    );
  }

  for (const nic of spec.nics) {
    if (await linkExists(nic.tapName)) {
      throw new ValidationError(
        `network device ${nic.tapName} already exists: another VM uses it, or destroy this VM first`,
      );
    }
  }

  // Both undo steps tolerate parts that were never made, so they go on before the batch runs.
  reverter.add(`network of ${netns}`, () => deleteContainerNetwork(spec, netns));
  await ipBatch([], hostCommands(spec, netns));
  await ipBatch(["-n", netns], namespaceCommands(spec));
}

/** Deletes the veth host ends and the namespace; parts already gone count as deleted. */
export async function deleteContainerNetwork(spec: ResolvedContainerSpec, netns: string) {
  for (const nic of spec.nics) {
    if (await linkExists(nic.tapName)) {
      await run("ip", ["link", "delete", "dev", nic.tapName], { okExitCodes: [1] });
    }
  }

  if (await exists(netnsPath(netns))) {
    await run("ip", ["netns", "delete", netns], { okExitCodes: [1] });
  }
}

function hostCommands(spec: ResolvedContainerSpec, netns: string) {
  const commands = [`netns add ${netns}`];

  for (const [index, nic] of spec.nics.entries()) {
    commands.push(`link add ${nic.tapName} type veth peer name eth${index} netns ${netns}`);
    commands.push(`link set dev ${nic.tapName} master ${nic.bridgeName} up`);
  }

  return commands;
}

function namespaceCommands(spec: ResolvedContainerSpec) {
  const commands = ["link set dev lo up"];
  const gateway = spec.nics.findIndex((nic) => nic.ipv4?.gateway);

  for (const [index, nic] of spec.nics.entries()) {
    commands.push(`link set dev eth${index} address ${nic.mac} up`);

    if (nic.ipv4) {
      commands.push(`address add ${nic.ipv4.address} dev eth${index}`);
    }
  }

  // One default route only, through the first NIC that has a gateway.
  if (gateway !== -1) {
    commands.push(`route add default via ${spec.nics[gateway]!.ipv4!.gateway} dev eth${gateway}`);
  }

  return commands;
}

/**
 * Runs `ip` commands from standard input. Every word in them was validated by
 * resolveContainerSpec (interface names, MACs, addresses) or made by the agent, so none can
 * break a line apart.
 */
async function ipBatch(options: string[], commands: string[]) {
  await run("ip", [...options, "-batch", "-"], { input: `${commands.join("\n")}\n` });
}

async function linkExists(name: string) {
  return exists(`/sys/class/net/${name}`);
}

async function exists(path: string) {
  return (await stat(path).catch(() => undefined)) !== undefined;
}
