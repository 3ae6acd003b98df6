import { hostRun, linkExists, type NetworkHost } from "./host.js";
import { validateInterfaceName, validateVlanId, vlanInterfaceName } from "./names.js";

/** Returns the `ip` arguments that create the 802.1Q sub-interface `<if>.<vid>`. */
export function vlanLinkArgs(physicalInterface: string, vlanId: number): string[] {
  const name = vlanInterfaceName(physicalInterface, vlanId);

  return [
    ...["link", "add", "link", validateInterfaceName(physicalInterface, "physical interface")],
    ...["name", name, "type", "vlan", "id", String(validateVlanId(vlanId))],
  ];
}

/** Creates the 802.1Q sub-interface of an L2 VLAN network unless it exists, and returns it. */
export async function ensureVlanInterface(
  host: NetworkHost,
  physicalInterface: string,
  vlanId: number,
): Promise<string> {
  const name = vlanInterfaceName(physicalInterface, vlanId);

  if (!(await linkExists(host, name))) {
    await hostRun(host, "ip", vlanLinkArgs(physicalInterface, vlanId));
  }

  return name;
}
