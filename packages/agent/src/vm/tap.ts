import { run } from "../exec.js";
import { assertInterfaceName } from "../validate.js";

/** Creates a persistent tap device, attaches it to a bridge and sets it up. */
export async function createTap(tapName: string, bridgeName: string) {
  assertInterfaceName(tapName, "tapName");
  assertInterfaceName(bridgeName, "bridgeName");

  await run("ip", ["tuntap", "add", "dev", tapName, "mode", "tap"]);

  try {
    await run("ip", ["link", "set", "dev", tapName, "master", bridgeName]);
    await run("ip", ["link", "set", "dev", tapName, "up"]);
  } catch (error) {
    await deleteTap(tapName);
    throw error;
  }
}

/** Deletes a tap device; a tap that does not exist counts as deleted. */
export async function deleteTap(tapName: string) {
  assertInterfaceName(tapName, "tapName");

  if (!(await tapExists(tapName))) {
    return;
  }

  await run("ip", ["tuntap", "del", "dev", tapName, "mode", "tap"]);

  // The device only goes away once every process holding it open has closed it, and a QEMU that
  // was just killed may still be exiting. Wait, so a new VM can reuse the name at once.
  for (let attempt = 0; attempt < TAP_GONE_ATTEMPTS && (await tapExists(tapName)); attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const TAP_GONE_ATTEMPTS = 100;

/** Checks whether a network interface of that name exists. */
export async function tapExists(tapName: string) {
  const result = await run("ip", ["link", "show", "dev", tapName], { okExitCodes: [1] });
  return result.exitCode === 0;
}
