/** Capacity of a simulator host as given to addSimulatorHost; the simulator reports it back. */
export interface SimulatorHostTable {
  uuid: string;
  cpuCapacity: number;
  /** Bytes. */
  memoryCapacity: number;
}

/** A simulator primary or backup storage, with what the simulator needs to serve it again. */
export interface SimulatorStorageTable {
  uuid: string;
  /** `primary` or `backup`. */
  kind: string;
  url: string;
  totalCapacity: number;
  availableCapacity: number;
  /** Backup storage only: secret signing its commands, encrypted with the node's secret key. */
  agentSecret: string | null;
}

export interface SimulatorTables {
  simulatorHosts: SimulatorHostTable;
  simulatorStorages: SimulatorStorageTable;
}
