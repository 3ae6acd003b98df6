/**
 * Network service providers. tstack has no virtual router: the Flat provider runs every service on
 * the VM's own host, SNAT included (a masquerade rule per L3 network), which ZStack leaves to
 * its virtual router.
 */
export interface NetworkServiceProvider {
  uuid: string;
  name: string;
  description: string;
  type: string;
  networkServiceTypes: string[];
}

export const FLAT_PROVIDER: NetworkServiceProvider = {
  uuid: "f1b7a78b680fb97d45b686eac3a16d98",
  name: "Flat Network Service Provider",
  description: "DHCP, DNS, userdata and outbound NAT on each VM's host",
  type: "Flat",
  networkServiceTypes: ["DHCP", "DNS", "Userdata", "SNAT"],
};

export const SECURITY_GROUP_PROVIDER: NetworkServiceProvider = {
  uuid: "536fa586acb4ee94e96aa6fec701c94e",
  name: "SecurityGroup",
  description: "Security groups compiled to nftables on each VM's host",
  type: "SecurityGroup",
  networkServiceTypes: ["SecurityGroup"],
};

export const PROVIDERS = [FLAT_PROVIDER, SECURITY_GROUP_PROVIDER];

/** Services that need another one on the same L3 network. */
export const SERVICE_NEEDS: Record<string, string> = {
  // The metadata server lives in the DHCP namespace and guests find it through DHCP option 121.
  Userdata: "DHCP",
  DNS: "DHCP",
};
