import type { Logger } from "pino";
import { COMMAND_PATH_HEADER, METRICS_REPORT_PATH } from "../protocol.js";
import { readConnection } from "../server/connection.js";
import { postSigned } from "../server/signed-post.js";
import type { QemuDriver } from "../vm/driver.js";
import { readSpec } from "../vm/lifecycle.js";
import { vmPaths } from "../vm/paths.js";
import { Collector, type ContainerSource, type MonitoredVm, type VmSource } from "./collector.js";
import { readMonitoringConfig, saveMonitoringConfig } from "./config.js";
import { renderPrometheus } from "./prometheus.js";
import { toSamples } from "./samples.js";
import type { Snapshot } from "./snapshot.js";
import type { MetricBatch, MonitoringConfig } from "./types.js";

/** Settings of a Monitor. */
export interface MonitorOptions {
  dataDir: string;
  secret: () => string;
  logger: Logger;
  /** Source of running VMs; the driver's VMs when unset. */
  vms?: VmSource;
  driver: QemuDriver;
  /** Source of running containers, reported in the VM namespace; none when unset. */
  containers?: ContainerSource;
}

const BLOCKSTATS_TIMEOUT_MS = 2_000;

/**
 * Collects host and VM metrics every interval, keeps the last snapshot for `GET /metrics` and
 * pushes each batch to the management node. A batch that fails to send is dropped, not retried:
 * the next one follows within an interval, and the server stores a gap.
 */
export class Monitor {
  #config: MonitoringConfig | undefined;
  #previous: Snapshot | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;
  readonly #collector: Collector;
  readonly #options: MonitorOptions;
  readonly #log: Logger;

  constructor(options: MonitorOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: "monitor" });
    this.#collector = new Collector(
      options.vms ?? driverVmSource(options.driver, options.dataDir),
      options.containers,
    );
  }

  /** Loads the saved configuration and starts collecting. */
  async start() {
    this.#config = await readMonitoringConfig(this.#options.dataDir);
    this.#stopped = false;
    this.#schedule(0);
    this.#log.info({ intervalSeconds: this.#config.intervalSeconds }, "monitoring started");
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  get config(): MonitoringConfig | undefined {
    return this.#config;
  }

  /** Saves a new configuration and restarts the schedule with its interval. */
  async configure(config: MonitoringConfig) {
    await saveMonitoringConfig(this.#options.dataDir, config);
    this.#config = config;
    this.#log.info(
      { intervalSeconds: config.intervalSeconds, pushUrl: config.pushUrl },
      "monitoring configured",
    );

    if (!this.#stopped) {
      clearTimeout(this.#timer);
      this.#schedule(0);
    }
  }

  /** Renders the last snapshot in the Prometheus text format, collecting one if none exists. */
  async metricsText(): Promise<string> {
    const connection = await readConnection(this.#options.dataDir);
    const snapshot =
      this.#previous ?? (await this.#collector.collect(this.#config?.primaryStorages ?? []));
    return renderPrometheus(connection?.hostUuid ?? "", snapshot);
  }

  /** Collects one snapshot and pushes its batch; exposed so tests need not wait for the timer. */
  async collectOnce(): Promise<MetricBatch | undefined> {
    const config = this.#config ?? (await readMonitoringConfig(this.#options.dataDir));
    const snapshot = await this.#collector.collect(config.primaryStorages);
    const connection = await readConnection(this.#options.dataDir);
    const previous = this.#previous;
    this.#previous = snapshot;

    if (!connection) {
      return undefined;
    }

    const batch: MetricBatch = {
      hostUuid: connection.hostUuid,
      time: snapshot.time,
      intervalSeconds: config.intervalSeconds,
      samples: toSamples(connection.hostUuid, previous, snapshot),
    };

    if (config.pushUrl) {
      await postSigned(config.pushUrl, batch, {
        secret: this.#options.secret(),
        headers: { [COMMAND_PATH_HEADER]: METRICS_REPORT_PATH },
        logger: this.#log,
        attempts: 1,
      });
    }

    return batch;
  }

  #schedule(delayMs: number) {
    this.#timer = setTimeout(() => void this.#tick(), delayMs);
    this.#timer.unref();
  }

  async #tick() {
    const started = Date.now();

    try {
      await this.collectOnce();
    } catch (error) {
      this.#log.warn({ err: error }, "metrics collection failed; retrying next interval");
    }

    if (!this.#stopped) {
      const intervalMs = (this.#config?.intervalSeconds ?? 10) * 1000;
      this.#schedule(Math.max(0, intervalMs - (Date.now() - started)));
    }
  }
}

/** Lists the driver's running VMs with their disks and taps from each VM's saved spec. */
export function driverVmSource(driver: QemuDriver, dataDir: string): VmSource {
  const specs = new Map<string, { pid: number; vm: MonitoredVm }>();

  return {
    async runningVms() {
      const running = driver.list().filter((info) => info.pid !== undefined);
      const vms: MonitoredVm[] = [];

      for (const info of running) {
        const cached = specs.get(info.vmUuid);

        if (cached && cached.pid === info.pid) {
          vms.push(cached.vm);
          continue;
        }

        const spec = await readSpec(vmPaths(dataDir, info.vmUuid));

        if (!spec) {
          continue;
        }

        const vm = {
          vmUuid: info.vmUuid,
          pid: info.pid!,
          cpuNum: spec.cpuNum,
          diskPaths: spec.disks.map((disk) => disk.path),
          tapNames: spec.nics.map((nic) => nic.tapName),
        };
        specs.set(info.vmUuid, { pid: info.pid!, vm });
        vms.push(vm);
      }

      for (const vmUuid of specs.keys()) {
        if (!running.some((info) => info.vmUuid === vmUuid)) {
          specs.delete(vmUuid);
        }
      }

      return vms;
    },
    queryBlockStats(vmUuid) {
      return Promise.race([
        driver.qmpExecute(vmUuid, "query-blockstats"),
        new Promise((_, reject) =>
          setTimeout(
            () => reject(new Error(`query-blockstats of VM ${vmUuid} timed out`)),
            BLOCKSTATS_TIMEOUT_MS,
          ).unref(),
        ),
      ]);
    },
  };
}
