/**
 * Host device and namespace names derived from validated resource uuids. Linux limits interface
 * names to 15 characters (IFNAMSIZ - 1), so each name keeps only the first 12 hex digits of a uuid.
 */

/** Longest Linux interface name. */
export const MAX_INTERFACE_NAME_LENGTH = 15;

/** Largest VXLAN network identifier (24 bits). */
export const MAX_VNI = 16_777_215;

const UUID_PATTERN = /^[0-9a-f]{32}$/;
const INTERFACE_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const NAMESPACE_PREFIX_PATTERN = /^[a-z][a-z0-9-]{0,15}$/;
const SHORT_ID_LENGTH = 12;

/** A resource uuid, a host name or a number that cannot become a host device name. */
export class InvalidNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidNameError";
  }
}

/** Rejects anything but a uuid in the server's form: 32 lower-case hex digits, no dashes. */
export function validateUuid(uuid: string, what = "uuid"): string {
  if (!UUID_PATTERN.test(uuid)) {
    throw new InvalidNameError(
      `invalid ${what} ${JSON.stringify(uuid)}: expected 32 lower-case hex digits without dashes`,
    );
  }

  return uuid;
}

/** Rejects names the kernel would refuse and names that could act as a path or an option. */
export function validateInterfaceName(name: string, what = "interface name"): string {
  if (!INTERFACE_NAME_PATTERN.test(name) || name === "." || name === "..") {
    throw new InvalidNameError(
      `invalid ${what} ${JSON.stringify(name)}: expected 1 to ${MAX_INTERFACE_NAME_LENGTH} ` +
        "letters, digits, '_', '.' or '-', not starting with '.' or '-'",
    );
  }

  return name;
}

/** Rejects a VXLAN network identifier outside 1 to 16777215. */
export function validateVni(vni: number): number {
  if (!Number.isInteger(vni) || vni < 1 || vni > MAX_VNI) {
    throw new InvalidNameError(`invalid VNI ${JSON.stringify(vni)}: expected 1 to ${MAX_VNI}`);
  }

  return vni;
}

/** Rejects an 802.1Q VLAN id outside 1 to 4094. */
export function validateVlanId(vlanId: number): number {
  if (!Number.isInteger(vlanId) || vlanId < 1 || vlanId > 4094) {
    throw new InvalidNameError(`invalid VLAN id ${JSON.stringify(vlanId)}: expected 1 to 4094`);
  }

  return vlanId;
}

/** Rejects a namespace name prefix that is not a short lower-case word. */
export function validateNamespacePrefix(prefix: string): string {
  if (!NAMESPACE_PREFIX_PATTERN.test(prefix)) {
    throw new InvalidNameError(
      `invalid namespace prefix ${JSON.stringify(prefix)}: expected 1 to 16 lower-case ` +
        "letters, digits or '-', starting with a letter",
    );
  }

  return prefix;
}

/** Returns the first 12 hex digits of a validated uuid. */
export function shortId(uuid: string, what = "uuid"): string {
  return validateUuid(uuid, what).slice(0, SHORT_ID_LENGTH);
}

/**
 * Returns the bridge of an L2 network: `br_<physical interface>` when the L2 network has one and
 * the name fits, as ZStack names NoVlan bridges, otherwise `br_` and the L2 network's short id.
 */
export function bridgeName(l2NetworkUuid: string, physicalInterface?: string): string {
  const id = shortId(l2NetworkUuid, "L2 network uuid");

  if (physicalInterface === undefined) {
    return `br_${id}`;
  }

  const candidate = `br_${validateInterfaceName(physicalInterface, "physical interface")}`;
  return candidate.length <= MAX_INTERFACE_NAME_LENGTH ? candidate : `br_${id}`;
}

/** Returns the VXLAN device of a VNI, `vx<vni>`. */
export function vxlanName(vni: number): string {
  return `vx${validateVni(vni)}`;
}

/** Returns the 802.1Q sub-interface `<if>.<vid>`, rejecting it when it exceeds 15 characters. */
export function vlanInterfaceName(physicalInterface: string, vlanId: number): string {
  const name = `${validateInterfaceName(physicalInterface, "physical interface")}.${validateVlanId(vlanId)}`;
  return validateInterfaceName(name, "VLAN interface name");
}

/** Returns the tap device of a VM NIC, `tap` and the NIC's short id. */
export function tapName(nicUuid: string): string {
  return `tap${shortId(nicUuid, "VM NIC uuid")}`;
}

/** Returns the network namespace of an L3 network's DHCP server on this host. */
export function dhcpNamespaceName(l3NetworkUuid: string, prefix: string): string {
  return `${validateNamespacePrefix(prefix)}dhcp-${shortId(l3NetworkUuid, "L3 network uuid")}`;
}

/** Names of the veth pair that joins an L3 network's DHCP namespace to the L3's bridge. */
export interface DhcpVethNames {
  /** End on the bridge, in the host's namespace. */
  bridgeEnd: string;
  /** End inside the DHCP namespace; it carries the DHCP server and metadata addresses. */
  namespaceEnd: string;
}

/** Returns the veth pair names of an L3 network's DHCP namespace. */
export function dhcpVethNames(l3NetworkUuid: string): DhcpVethNames {
  const id = shortId(l3NetworkUuid, "L3 network uuid");
  return { bridgeEnd: `dh_${id}`, namespaceEnd: `dn_${id}` };
}
