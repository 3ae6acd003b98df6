import { HttpSimulatorControl, Simulator, type SimulatorControl } from "@tstack/simulator";
import type { Core } from "../core/core.js";
import {
  hostRegistration,
  simulatorHostRows,
  storageRegistration,
  storedImages,
} from "./registrations.js";

/** The simulator's address for commands and its admin channel. */
export interface SimulatorLink {
  control: SimulatorControl;
  /** Address and port that commands to simulator hosts and storage go to. */
  host: string;
  port: number;
  /** The simulator this node started in its own process, if it is not an external one. */
  inProcess?: Simulator;
}

const links = new WeakMap<Core, Promise<SimulatorLink>>();

/**
 * Returns the node's simulator: the external `tstack-simulator` named by TSTACK_SIMULATOR_URL
 * (admin token in TSTACK_SIMULATOR_TOKEN), or else one started in this process on a free
 * loopback port at first use.
 */
export function simulatorLink(core: Core): Promise<SimulatorLink> {
  let link = links.get(core);

  if (!link) {
    link = connect(core);
    links.set(core, link);
    link.catch(() => links.delete(core));
  }

  return link;
}

/** Stops the in-process simulator, if this node started one. */
export async function closeSimulatorLink(core: Core) {
  const link = links.get(core);
  links.delete(core);
  const started = await link?.catch(() => undefined);
  await started?.inProcess?.stop();
}

async function connect(core: Core): Promise<SimulatorLink> {
  const url = process.env.TSTACK_SIMULATOR_URL;

  if (url) {
    const token = process.env.TSTACK_SIMULATOR_TOKEN;

    if (!token) {
      throw new Error(
        `TSTACK_SIMULATOR_URL is ${url} but TSTACK_SIMULATOR_TOKEN is not set; set it to the simulator's admin token`,
      );
    }

    const control = new HttpSimulatorControl(url, token);
    return { control, host: control.url.hostname, port: Number(control.url.port) };
  }

  const simulator = new Simulator({ logger: core.log.child({ component: "simulator" }) });
  const address = await simulator.start();
  core.log.info({ port: address.port }, "started the in-process simulator");
  await registerKnown(core, simulator);
  return { control: simulator, host: address.host, port: address.port, inProcess: simulator };
}

/**
 * Registers the simulator hosts and storage of the database with a fresh in-process simulator,
 * as hosts that rebooted: they run no VMs, and the tracker reconnects them. Backup storage gets
 * back the images the database records on it, so VMs can still be created from them.
 */
async function registerKnown(core: Core, simulator: Simulator) {
  for (const row of await simulatorHostRows(core)) {
    await simulator.registerHost(hostRegistration(core, row));
  }

  for (const row of await core.kysely.selectFrom("simulatorStorages").selectAll().execute()) {
    const images = row.kind === "backup" ? await storedImages(core, row.uuid) : [];
    await simulator.registerStorage(storageRegistration(core, row, images));
  }
}
