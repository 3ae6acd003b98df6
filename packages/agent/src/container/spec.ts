import { InvalidAddressError, parseCidr, validateIpv4 } from "../network/ipv4.js";
import {
  assertInteger,
  assertInterfaceName,
  assertMac,
  assertOptionPath,
  assertUuid,
  ValidationError,
} from "../validate.js";
import type { ContainerNicSpec, ContainerSpec } from "./types.js";

/** A NIC whose host device name is decided. */
export interface ResolvedContainerNic extends ContainerNicSpec {
  tapName: string;
}

/** A validated ContainerSpec with every default filled in. */
export interface ResolvedContainerSpec extends ContainerSpec {
  cpuShares: number;
  pidsLimit: number;
  hostname: string;
  dns: string[];
  init: string[];
  nics: ResolvedContainerNic[];
}

const MAX_NICS = 8;
const MAX_DNS = 3;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * Validates a container start request and fills in defaults. Every string that later becomes a
 * device name, path, mount or runc argument is checked here.
 */
export function resolveContainerSpec(input: ContainerSpec): ResolvedContainerSpec {
  if (typeof input !== "object" || input === null || input.hypervisorType !== "Container") {
    throw new ValidationError('invalid hypervisorType: expected "Container"');
  }

  assertUuid(input.vmUuid, "vmUuid");
  assertInteger(input.memoryMiB, "memoryMiB", 8, 4 * 1024 * 1024);
  assertInteger(input.cpuNum, "cpuNum", 1, 255);
  const cpuShares = input.cpuShares ?? 1024 * input.cpuNum;
  assertInteger(cpuShares, "cpuShares", 2, 262_144);
  const pidsLimit = input.pidsLimit ?? 1024;
  assertInteger(pidsLimit, "pidsLimit", 16, 4_194_304);
  assertUuid(input.rootfs?.imageUuid, "rootfs.imageUuid");
  assertOptionPath(input.rootfs.tarPath, "rootfs.tarPath");

  if (input.rootfs.upperDir !== undefined) {
    assertOptionPath(input.rootfs.upperDir, "rootfs.upperDir");
  }

  const hostname = input.hostname ?? `ct-${input.vmUuid.slice(0, 8)}`;

  if (typeof hostname !== "string" || !HOSTNAME.test(hostname)) {
    throw new ValidationError(
      `invalid hostname ${JSON.stringify(hostname)}: expected 1-63 letters, digits and inner dashes`,
    );
  }

  const dns = input.dns ?? [];

  if (!Array.isArray(dns) || dns.length > MAX_DNS) {
    throw new ValidationError(`invalid dns: expected at most ${MAX_DNS} IPv4 addresses`);
  }

  for (const [index, server] of dns.entries()) {
    ipv4Field(() => validateIpv4(server), `dns[${index}]`);
  }

  return {
    ...input,
    cpuShares,
    pidsLimit,
    hostname,
    dns,
    init: resolveInit(input.init),
    nics: resolveNics(input),
  };
}

function resolveInit(init: unknown): string[] {
  if (init === undefined) {
    return ["/sbin/init"];
  }

  const valid =
    Array.isArray(init) &&
    init.length > 0 &&
    init.length <= 64 &&
    init.every((arg) => typeof arg === "string" && !arg.includes("\0")) &&
    (init[0] as string).startsWith("/");

  if (!valid) {
    throw new ValidationError(
      "invalid init: expected 1 to 64 strings without NUL, the first an absolute path",
    );
  }

  return init as string[];
}

function resolveNics(input: ContainerSpec): ResolvedContainerNic[] {
  if (!Array.isArray(input.nics) || input.nics.length > MAX_NICS) {
    throw new ValidationError(`invalid nics: expected at most ${MAX_NICS} NICs`);
  }

  const nics = input.nics.map((nic, index) => resolveNic(input.vmUuid, nic, index));

  if (new Set(nics.map((nic) => nic.tapName)).size !== nics.length) {
    throw new ValidationError("invalid nics: two NICs have the same tapName");
  }

  return nics;
}

function resolveNic(vmUuid: string, nic: ContainerNicSpec, index: number): ResolvedContainerNic {
  assertMac(nic.mac, `nics[${index}].mac`);
  assertInterfaceName(nic.bridgeName, `nics[${index}].bridgeName`);

  const tapName = nic.tapName ?? `vnic${vmUuid.slice(0, 8)}.${index}`;
  assertInterfaceName(tapName, `nics[${index}].tapName`);

  const resolved: ResolvedContainerNic = { mac: nic.mac, bridgeName: nic.bridgeName, tapName };

  if (nic.ipv4 !== undefined) {
    const field = `nics[${index}].ipv4`;
    ipv4Field(() => parseCidr(nic.ipv4!.address, "address"), `${field}.address`);

    if (nic.ipv4.gateway !== undefined) {
      ipv4Field(() => validateIpv4(nic.ipv4!.gateway!), `${field}.gateway`);
    }

    resolved.ipv4 = { address: nic.ipv4.address, gateway: nic.ipv4.gateway };
  }

  return resolved;
}

function ipv4Field(check: () => unknown, field: string) {
  try {
    check();
  } catch (error) {
    if (error instanceof InvalidAddressError || error instanceof TypeError) {
      throw new ValidationError(`invalid ${field}: ${error.message}`);
    }

    throw error;
  }
}
