import { signRequest } from "@tstack/agent/auth";
import type { Logger } from "pino";
import type { SimHost, SimVm } from "./state.js";

/** One sample as the agent pushes it to `/monitoring/samples`. */
export interface PushedSample {
  namespace: "ZStack/Host" | "ZStack/VM" | "ZStack/Volume";
  metricName: string;
  labels: Record<string, string>;
  value: number;
}

/** The body of one metric push, the same shape as the agent's. */
export interface PushedBatch {
  hostUuid: string;
  /** Milliseconds since the epoch. */
  time: number;
  intervalSeconds: number;
  samples: PushedSample[];
}

/** Settings of a MetricsPusher. */
export interface MetricsPusherOptions {
  /** Returns every registered host; read on each tick. */
  hosts: () => Iterable<SimHost>;
  /** Whether a host-down fault applies to the host, which then pushes nothing. */
  isDown: (hostUuid: string) => boolean;
  log: Logger;
  /** Milliseconds between checks for hosts that are due; 1000 by default. */
  tickMs?: number;
}

interface Schedule {
  intervalSeconds: number;
  nextAt: number;
}

const MIB = 1024 * 1024;
const WARN_INTERVAL_MS = 60_000;
const NETWORK_INTERFACE = "eth0";

/**
 * Pushes a synthetic metric batch for each simulated host that has a push URL, once per its
 * monitoring interval, signed with the host secret to the same route real agents use. One timer
 * serves every host. Each host's first push falls at a random point of its interval, so 1,000
 * hosts spread their POSTs over the interval as agents with independent timers do. A host whose
 * last POST has not finished skips its turn, so a slow management node gets no pile-up.
 */
export class MetricsPusher {
  readonly #options: MetricsPusherOptions;
  readonly #schedules = new Map<string, Schedule>();
  readonly #inFlight = new Set<string>();
  readonly #cpuSeconds = new WeakMap<SimVm, number>();
  #timer: NodeJS.Timeout | undefined;
  /** Failed pushes since the last warning, which goes out at most once a minute. */
  #failures = 0;
  #lastWarningAt = 0;

  constructor(options: MetricsPusherOptions) {
    this.#options = options;
  }

  start() {
    this.#timer ??= setInterval(() => void this.tick(Date.now()), this.#options.tickMs ?? 1000);
    this.#timer.unref();
  }

  stop() {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Starts the POST of every host whose turn has come by `now`. The promise settles when those
   * POSTs have finished; the timer does not wait for it.
   */
  async tick(now: number): Promise<void> {
    const seen = new Set<string>();
    const pushes: Promise<void>[] = [];

    for (const host of this.#options.hosts()) {
      seen.add(host.uuid);
      const config = host.monitoring;

      if (!config?.pushUrl || !host.hostUuid) {
        continue;
      }

      const schedule = this.#scheduleOf(host.uuid, config.intervalSeconds, now);

      if (schedule.nextAt > now || this.#inFlight.has(host.uuid)) {
        continue;
      }

      schedule.nextAt += config.intervalSeconds * 1000;

      // After a long stall the schedule jumps ahead, so the host does not push a burst.
      if (schedule.nextAt <= now) {
        schedule.nextAt = now + config.intervalSeconds * 1000;
      }

      if (this.#options.isDown(host.uuid)) {
        continue;
      }

      const batch = this.batchOf(host, now, config.intervalSeconds);
      pushes.push(this.#push(host, config.pushUrl, batch));
    }

    for (const uuid of this.#schedules.keys()) {
      if (!seen.has(uuid)) {
        this.#schedules.delete(uuid);
      }
    }

    await Promise.all(pushes);
  }

  /** Builds one host's synthetic batch and advances the CPU time of its VMs. */
  batchOf(host: SimHost, time: number, intervalSeconds: number): PushedBatch {
    const hostUuid = host.hostUuid ?? host.uuid;
    const samples: PushedSample[] = [];
    let busyCpus = 0;
    let usedMemory = 0;
    let networkBytes = 0;

    for (const vm of host.vms.values()) {
      const utilisation = vm.state === "Paused" ? 0 : wave(vm.vmUuid, time, 30, 25);
      const cpuSeconds =
        (this.#cpuSeconds.get(vm) ?? 0) + (utilisation / 100) * vm.cpuNum * intervalSeconds;
      const memory = Math.round(vm.memoryMiB * MIB * (wave(vm.vmUuid, time, 60, 10) / 100));
      this.#cpuSeconds.set(vm, cpuSeconds);
      busyCpus += (utilisation / 100) * vm.cpuNum;
      usedMemory += memory;
      samples.push(...vmSamples(vm, time, utilisation, cpuSeconds, memory));
      networkBytes += vm.tapNames.length * nicBytes(vm.vmUuid, time);
    }

    samples.push(...hostSamples(host, hostUuid, busyCpus, usedMemory, networkBytes));
    return { hostUuid, time, intervalSeconds, samples };
  }

  #scheduleOf(hostUuid: string, intervalSeconds: number, now: number) {
    let schedule = this.#schedules.get(hostUuid);

    if (!schedule || schedule.intervalSeconds !== intervalSeconds) {
      const offset = Math.floor(Math.random() * intervalSeconds * 1000);
      schedule = { intervalSeconds, nextAt: now + offset };
      this.#schedules.set(hostUuid, schedule);
    }

    return schedule;
  }

  // One attempt, as the agent makes: the next batch follows within an interval.
  async #push(host: SimHost, url: string, batch: PushedBatch) {
    const text = JSON.stringify(batch);
    const target = new URL(url);
    this.#inFlight.add(host.uuid);

    try {
      const response = await fetch(target, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          commandpath: "/monitoring/samples",
          ...signRequest(host.secret, "POST", target.pathname + target.search, text),
        },
        body: text,
        signal: AbortSignal.timeout(batch.intervalSeconds * 1000),
      });
      await response.arrayBuffer();

      if (!response.ok) {
        this.#warn({ hostUuid: host.uuid, url, status: response.status });
      }
    } catch (error) {
      this.#warn({ hostUuid: host.uuid, url, err: error });
    } finally {
      this.#inFlight.delete(host.uuid);
    }
  }

  // 1,000 hosts push up to 100 batches a second, so failures are counted and logged once a minute.
  #warn(details: Record<string, unknown>) {
    this.#failures++;
    const now = Date.now();

    if (now - this.#lastWarningAt < WARN_INTERVAL_MS) {
      return;
    }

    this.#options.log.warn(
      { ...details, failures: this.#failures },
      "metric pushes failed or were rejected; the last one is shown",
    );
    this.#failures = 0;
    this.#lastWarningAt = now;
  }
}

function vmSamples(
  vm: SimVm,
  time: number,
  utilisation: number,
  cpuSeconds: number,
  memory: number,
): PushedSample[] {
  const labels = { VMUuid: vm.vmUuid };
  const samples: PushedSample[] = [
    { namespace: "ZStack/VM", metricName: "CPUUsedUtilization", labels, value: utilisation },
    { namespace: "ZStack/VM", metricName: "CPUTimeSeconds", labels, value: cpuSeconds },
    { namespace: "ZStack/VM", metricName: "MemoryUsedBytes", labels, value: memory },
  ];

  for (const tapName of vm.tapNames.filter((name) => name !== "")) {
    const bytes = nicBytes(vm.vmUuid, time);
    samples.push(...networkSamples("ZStack/VM", { ...labels, InterfaceName: tapName }, bytes));
  }

  for (const path of vm.disks) {
    const volumeUuid = /\/vol-([0-9a-f]{32})\//.exec(path)?.[1];

    if (!volumeUuid) {
      continue;
    }

    const volumeLabels = { VolumeUuid: volumeUuid, VMUuid: vm.vmUuid };
    const writeBytes = wave(volumeUuid, time, 64 * 1024, 32 * 1024);
    const readBytes = wave(volumeUuid, time, 16 * 1024, 8 * 1024);
    samples.push(
      sample("ZStack/Volume", "DiskReadBytes", volumeLabels, readBytes),
      sample("ZStack/Volume", "DiskWriteBytes", volumeLabels, writeBytes),
      sample("ZStack/Volume", "DiskReadOps", volumeLabels, readBytes / 4096),
      sample("ZStack/Volume", "DiskWriteOps", volumeLabels, writeBytes / 4096),
    );
  }

  return samples;
}

function hostSamples(
  host: SimHost,
  hostUuid: string,
  busyCpus: number,
  usedMemory: number,
  networkBytes: number,
): PushedSample[] {
  const labels = { HostUuid: hostUuid };
  const utilisation = Math.min(100, (busyCpus / Math.max(1, host.cpuNum)) * 100);
  const used = Math.min(host.memoryBytes, usedMemory);

  return [
    sample("ZStack/Host", "CPUUsedUtilization", labels, utilisation),
    sample("ZStack/Host", "LoadAverage1Min", labels, busyCpus),
    sample("ZStack/Host", "LoadAverage5Min", labels, busyCpus),
    sample("ZStack/Host", "LoadAverage15Min", labels, busyCpus),
    sample("ZStack/Host", "MemoryUsedBytes", labels, used),
    sample("ZStack/Host", "MemoryAvailableBytes", labels, host.memoryBytes - used),
    ...networkSamples("ZStack/Host", { ...labels, InterfaceName: NETWORK_INTERFACE }, networkBytes),
  ];
}

function networkSamples(
  namespace: PushedSample["namespace"],
  labels: Record<string, string>,
  bytes: number,
): PushedSample[] {
  // 500-byte packets, and the outbound side carries a fifth less than the inbound side.
  return [
    sample(namespace, "NetworkInBytes", labels, bytes),
    sample(namespace, "NetworkInPackets", labels, bytes / 500),
    sample(namespace, "NetworkOutBytes", labels, bytes * 0.8),
    sample(namespace, "NetworkOutPackets", labels, (bytes * 0.8) / 500),
  ];
}

function nicBytes(vmUuid: string, time: number) {
  return wave(vmUuid, time, 20_000, 15_000);
}

function sample(
  namespace: PushedSample["namespace"],
  metricName: string,
  labels: Record<string, string>,
  value: number,
): PushedSample {
  return { namespace, metricName, labels, value };
}

/**
 * Returns `mean ± amplitude` on a 10-minute sine whose phase comes from the UUID, so series of
 * different resources differ while each one changes smoothly and never goes negative.
 */
function wave(uuid: string, time: number, mean: number, amplitude: number) {
  const phase = ((Number.parseInt(uuid.slice(0, 8), 16) || 0) / 0xffffffff) * 2 * Math.PI;
  const value = mean + amplitude * Math.sin(phase + (time / 600_000) * 2 * Math.PI);
  return Math.max(0, value);
}
