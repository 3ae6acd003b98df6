import { chmod, mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { linkExists } from "../network/host.js";
import {
  type ApplyDhcpCmd,
  type ApplySecurityGroupCmd,
  type ApplyUserdataCmd,
  applyDhcp,
  applyNat,
  applySecurityGroups,
  applyUserdata,
  ensureL2Network,
  InvalidNameError,
  type L2NetworkSpec,
  type NatCmd,
  type NetworkHost,
  type ReleaseDhcpCmd,
  type ReleaseUserdataCmd,
  type RemoveSecurityGroupCmd,
  releaseDhcp,
  releaseL2NetworkIfUnused,
  releaseUserdata,
  removeNat,
  removeSecurityGroups,
  type SyncVxlanPeersCmd,
  syncVxlanPeers,
  validateHost,
} from "../network/index.js";
import { validateInterfaceName } from "../network/names.js";
import { findLocalVtep } from "../network/vxlan.js";
import { ValidationError } from "../validate.js";
import type { ServerContext } from "./app.js";

/** Body of `/network/l2/check`: what an L2 network needs from this host before it attaches. */
export interface CheckL2NetworkCmd {
  physicalInterface?: string;
  /** VTEP CIDR of a VXLAN pool; the reply names this host's address inside it. */
  vtepCidr?: string;
}

type Body = Record<string, unknown>;
type Work = (host: NetworkHost, body: Body) => Promise<object | undefined>;

/**
 * Registers the synchronous `/network/...` commands. The namespace prefix comes from the agent's
 * environment (`TSTACK_AGENT_NETNS_PREFIX`) and the state directory is `<data-dir>/network`; a
 * command body never chooses either.
 */
export function registerNetworkRoutes(app: FastifyInstance, context: ServerContext) {
  let prepared: Promise<NetworkHost> | undefined;
  const host = () => {
    prepared ??= prepareNetworkHost(context).catch((error) => {
      prepared = undefined;
      throw error;
    });
    return prepared;
  };

  const route = (path: string, work: Work) => {
    app.post(path, async (request) => {
      const body = request.body;

      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new ValidationError(`the body of ${path} must be a JSON object`);
      }

      try {
        return { success: true, ...(await work(await host(), body as Body)) };
      } catch (error) {
        throw error instanceof InvalidNameError ? new ValidationError(error.message) : error;
      }
    });
  };

  route("/network/l2/check", (h, body) => checkL2Network(h, body as CheckL2NetworkCmd));
  route("/network/l2/ensure", (h, body) => ensureL2Network(h, l2Spec(body)));
  route("/network/l2/release", async (h, body) => ({
    released: await releaseL2NetworkIfUnused(h, l2Spec(body)),
  }));
  route("/network/vxlan/peers/sync", async (h, body) => {
    const cmd = body as unknown as SyncVxlanPeersCmd;
    const vtep = await findLocalVtep(h, String(cmd.vtepCidr));
    await syncVxlanPeers(h, cmd.vni, list(cmd.peerVteps, "peerVteps"), vtep.address);
    return { vtepIp: vtep.address };
  });
  route("/network/dhcp/apply", async (h, body) => {
    const cmd = body as unknown as ApplyDhcpCmd;
    list(cmd.entries, "entries");
    return applyDhcp(h, cmd);
  });
  route("/network/dhcp/release", async (h, body) => {
    const cmd = body as unknown as ReleaseDhcpCmd;
    list(cmd.macs, "macs");
    await releaseDhcp(h, cmd);
    return {};
  });
  route("/network/userdata/apply", async (h, body) => {
    await applyUserdata(h, body as unknown as ApplyUserdataCmd);
    return {};
  });
  route("/network/userdata/release", async (h, body) => {
    await releaseUserdata(h, body as unknown as ReleaseUserdataCmd);
    return {};
  });
  route("/network/securitygroup/apply", async (h, body) => {
    const cmd = body as unknown as ApplySecurityGroupCmd;
    list(cmd.nics, "nics");
    await applySecurityGroups(h, cmd);
    return {};
  });
  route("/network/securitygroup/remove", async (h, body) => {
    const cmd = body as unknown as RemoveSecurityGroupCmd;
    list(cmd.nicUuids, "nicUuids");
    await removeSecurityGroups(h, cmd);
    return {};
  });
  route("/network/nat/apply", async (h, body) => {
    await applyNat(h, body as unknown as NatCmd);
    return {};
  });
  route("/network/nat/remove", async (h, body) => {
    await removeNat(h, body as unknown as NatCmd);
    return {};
  });
}

/**
 * Builds the network host of this agent. dnsmasq drops root and rereads its hosts file as an
 * unprivileged user, so the data directory becomes traversable (0711, still not listable) and the
 * network state below it readable; the host secret keeps its own 0600.
 */
async function prepareNetworkHost(context: ServerContext): Promise<NetworkHost> {
  const stateDir = join(context.dataDir, "network");
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  await chmod(context.dataDir, 0o711);
  await chmod(stateDir, 0o755);
  return validateHost({
    namespacePrefix: process.env.TSTACK_AGENT_NETNS_PREFIX ?? "tstack-",
    stateDir,
    logger: context.logger.child({ component: "network" }),
  });
}

/** Checks that this host has the L2 network's physical interface and a VTEP address. */
async function checkL2Network(host: NetworkHost, cmd: CheckL2NetworkCmd) {
  if (cmd.physicalInterface !== undefined) {
    const name = validateInterfaceName(String(cmd.physicalInterface), "physicalInterface");

    if (!(await linkExists(host, name))) {
      throw new ValidationError(
        `physical interface ${name} does not exist on this host; create it or attach the L2 network to a cluster whose hosts have it`,
      );
    }
  }

  if (cmd.vtepCidr !== undefined) {
    const vtep = await findLocalVtep(host, String(cmd.vtepCidr));
    return { vtepIp: vtep.address, vtepInterface: vtep.interfaceName };
  }

  return {};
}

function l2Spec(body: Body): L2NetworkSpec {
  if (body.type !== "NoVlan" && body.type !== "Vlan" && body.type !== "Vxlan") {
    throw new ValidationError(
      `invalid type ${JSON.stringify(body.type)}: expected NoVlan, Vlan or Vxlan`,
    );
  }

  return body as unknown as L2NetworkSpec;
}

function list<T>(value: T[] | undefined, field: string): T[] {
  if (!Array.isArray(value)) {
    throw new ValidationError(`invalid ${field} ${JSON.stringify(value)}: expected an array`);
  }

  return value;
}
