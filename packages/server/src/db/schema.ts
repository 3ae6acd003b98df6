import type { Generated } from "kysely";
import type { MonitoringTables } from "../monitoring/schema.js";
import type { NetworkTables } from "../network/schema.js";
import type { SecurityGroupTables } from "../network/security-groups-schema.js";
import type { SimulatorTables } from "../simulator/schema.js";

/** Columns every resource table has; dates are ISO 8601 strings in UTC. */
interface ResourceColumns {
  uuid: string;
  name: string;
  description: string | null;
  accountUuid: string;
  createDate: string;
  lastOpDate: string;
  /** Bumped on every state change, so a late or retried step cannot overwrite a newer state. */
  version: number;
}

export interface ResourceIndexTable {
  uuid: string;
  resourceType: string;
  name: string | null;
  accountUuid: string;
  createDate: string;
}

export interface ZoneTable extends ResourceColumns {
  state: string;
  type: string;
}

export interface ClusterTable extends ResourceColumns {
  zoneUuid: string;
  state: string;
  hypervisorType: string;
  type: string;
}

export interface InstanceOfferingTable extends ResourceColumns {
  cpuNum: number;
  cpuSpeed: number;
  memorySize: number;
  allocatorStrategy: string;
  sortKey: number;
  state: string;
  type: string;
}

export interface DiskOfferingTable extends ResourceColumns {
  diskSize: number;
  allocatorStrategy: string;
  sortKey: number;
  state: string;
  type: string;
}

export interface AccountTable extends ResourceColumns {
  type: string;
  state: string;
  passwordHash: string;
}

export interface UserTable extends ResourceColumns {
  state: string;
  passwordHash: string;
}

export interface SessionTable {
  uuid: string;
  accountUuid: string;
  userUuid: string;
  userType: string;
  expiredDate: string;
  createDate: string;
}

export interface QuotaTable {
  uuid: string;
  identityUuid: string;
  identityType: string;
  name: string;
  value: number;
  createDate: string;
  lastOpDate: string;
}

export interface GlobalConfigTable {
  category: string;
  name: string;
  value: string;
  lastOpDate: string;
}

export interface ResourceConfigTable {
  uuid: string;
  resourceUuid: string;
  resourceType: string;
  category: string;
  name: string;
  value: string;
  createDate: string;
  lastOpDate: string;
}

export interface TagTable {
  uuid: string;
  resourceUuid: string;
  resourceType: string;
  tag: string;
  type: string;
  inherent: number;
  accountUuid: string;
  createDate: string;
  lastOpDate: string;
}

export interface ApiJobTable {
  uuid: string;
  apiName: string;
  state: string;
  accountUuid: string | null;
  userUuid: string | null;
  resourceUuid: string | null;
  request: string;
  result: string | null;
  httpStatus: number | null;
  progress: number | null;
  progressText: string | null;
  managementNodeUuid: string;
  idempotencyKey: string | null;
  requestHash: string | null;
  webhookUrl: string | null;
  cancelRequested: number;
  deadline: string;
  createDate: string;
  lastOpDate: string;
  finishDate: string | null;
}

export interface WorkflowTable {
  uuid: string;
  name: string;
  jobUuid: string | null;
  state: string;
  data: string;
  /** Number of steps whose run completed. */
  completedSteps: number;
  managementNodeUuid: string;
  error: string | null;
  createDate: string;
  lastOpDate: string;
}

export interface EventTable {
  id: Generated<number>;
  path: string;
  resourceUuid: string | null;
  accountUuid: string | null;
  content: string;
  createDate: string;
}

export interface DeliveryTable {
  id: Generated<number>;
  url: string;
  headers: string;
  body: string;
  attempts: number;
  nextAttemptDate: string;
  state: string;
  lastError: string | null;
  createDate: string;
}

export interface ManagementNodeTable {
  uuid: string;
  hostName: string;
  port: number;
  state: string;
  version: string;
  heartBeat: string;
  joinDate: string;
}

export interface AuditTable {
  uuid: string;
  accountUuid: string | null;
  userUuid: string | null;
  apiName: string;
  resourceUuid: string | null;
  requestId: string;
  jobUuid: string | null;
  success: number | null;
  error: string | null;
  clientIp: string;
  createDate: string;
  finishDate: string | null;
}

export interface WebHookTable extends ResourceColumns {
  url: string;
  type: string;
  opaque: string | null;
  secret: string | null;
}

export interface HostTable extends ResourceColumns {
  zoneUuid: string;
  clusterUuid: string;
  managementIp: string;
  hypervisorType: string;
  state: string;
  status: string;
  architecture: string | null;
  username: string | null;
  sshPort: number;
  /** SSH password or private key, encrypted with the node's secret key. */
  credential: string | null;
  /** Per-host agent secret, encrypted with the node's secret key. */
  agentSecret: string;
  agentPort: number;
  facts: string | null;
  accelerator: string | null;
  lastError: string | null;
}

export interface HostCapacityTable {
  uuid: string;
  totalCpu: number;
  availableCpu: number;
  cpuNum: number;
  totalMemory: number;
  availableMemory: number;
  totalPhysicalMemory: number;
  availablePhysicalMemory: number;
}

/** An agent command kept until its unreachable host connects again. */
/** The request of a VM created with the JustCreate strategy, used by its first start. */
export interface VmCreationSpecTable {
  vmInstanceUuid: string;
  /** JSON of the L3 networks, static IPs, root disk size and placement of the create call. */
  spec: string;
}

export interface HostCleanupTable {
  uuid: string;
  hostUuid: string;
  /** The VM the cleanup undoes work of, if any; a start of that VM on the host runs it first. */
  vmUuid: string | null;
  path: string;
  /** JSON body of the command. */
  body: string;
  /** 1 when the command is sent with a task uuid and callback. */
  async: number;
  reason: string;
  attempts: number;
  lastError: string | null;
  createDate: string;
  lastOpDate: string;
}

export interface VmInstanceTable extends ResourceColumns {
  zoneUuid: string | null;
  clusterUuid: string | null;
  hostUuid: string | null;
  lastHostUuid: string | null;
  imageUuid: string | null;
  instanceOfferingUuid: string | null;
  rootVolumeUuid: string | null;
  defaultL3NetworkUuid: string | null;
  type: string;
  hypervisorType: string;
  state: string;
  cpuNum: number;
  memorySize: number;
  platform: string;
  allocatorStrategy: string | null;
  /** When a Destroyed VM is expunged by the garbage collector. */
  expungeDate: string | null;
}

export interface BackupStorageTable extends ResourceColumns {
  type: string;
  url: string;
  hostname: string;
  /** The host whose agent manages the store. */
  hostUuid: string;
  state: string;
  status: string;
  totalCapacity: number;
  availableCapacity: number;
  lastError: string | null;
}

export interface BackupStorageZoneRefTable {
  backupStorageUuid: string;
  zoneUuid: string;
  createDate: string;
}

export interface ImageTable extends ResourceColumns {
  state: string;
  status: string;
  url: string;
  mediaType: string;
  format: string;
  platform: string;
  guestOsType: string | null;
  /** Virtual size in bytes, from qemu-img. */
  size: number;
  /** File size in bytes. */
  actualSize: number;
  md5: string | null;
  sha256: string | null;
  lastError: string | null;
}

export interface ImageBackupStorageRefTable {
  imageUuid: string;
  backupStorageUuid: string;
  status: string;
  installPath: string | null;
  lastError: string | null;
  createDate: string;
  lastOpDate: string;
}

export interface PrimaryStorageTable extends ResourceColumns {
  type: string;
  url: string;
  zoneUuid: string;
  state: string;
  status: string;
  /** Capacity for volumes, after the over-provisioning ratio; available is what is not reserved. */
  totalCapacity: number;
  availableCapacity: number;
  totalPhysicalCapacity: number;
  availablePhysicalCapacity: number;
  lastError: string | null;
}

export interface PrimaryStorageClusterRefTable {
  primaryStorageUuid: string;
  clusterUuid: string;
  createDate: string;
}

/** Per-host capacity of local primary storage. */
export interface LocalStorageHostRefTable {
  primaryStorageUuid: string;
  hostUuid: string;
  totalCapacity: number;
  availableCapacity: number;
  totalPhysicalCapacity: number;
  availablePhysicalCapacity: number;
}

/** An ISO image in a VM's CD-ROM drive, from the image cache of the VM's primary storage. */
export interface VmCdRomTable {
  vmInstanceUuid: string;
  isoUuid: string;
  primaryStorageUuid: string;
  /** Path of the cached ISO on the VM's host. */
  installPath: string;
  createDate: string;
}

export interface ImageCacheTable {
  uuid: string;
  primaryStorageUuid: string;
  /** The host holding the copy on local storage; empty for shared storage. */
  hostUuid: string;
  imageUuid: string;
  installUrl: string;
  size: number;
  actualSize: number;
  md5: string | null;
  state: string;
  createDate: string;
  lastOpDate: string;
}

export interface VolumeTable extends ResourceColumns {
  type: string;
  vmInstanceUuid: string | null;
  primaryStorageUuid: string | null;
  /** The host whose local storage contains the volume; null on shared storage. */
  hostUuid: string | null;
  rootImageUuid: string | null;
  diskOfferingUuid: string | null;
  format: string;
  size: number;
  actualSize: number;
  /** Bytes reserved on the primary storage, returned when the volume is expunged. */
  reservedCapacity: number;
  deviceId: number | null;
  state: string;
  status: string;
  installPath: string | null;
  /** UUID of the qcow2 file at the top of the volume's chain. */
  topFileUuid: string | null;
  lastError: string | null;
}

export interface VolumeSnapshotTable extends ResourceColumns {
  volumeUuid: string;
  primaryStorageUuid: string;
  parentUuid: string | null;
  volumeType: string;
  primaryStorageInstallPath: string;
  size: number;
  state: string;
  status: string;
  latest: number;
}

/** The whole schema, as Kysely types it. */
export interface Database
  extends NetworkTables,
    SecurityGroupTables,
    MonitoringTables,
    SimulatorTables {
  resources: ResourceIndexTable;
  zones: ZoneTable;
  clusters: ClusterTable;
  instanceOfferings: InstanceOfferingTable;
  diskOfferings: DiskOfferingTable;
  accounts: AccountTable;
  users: UserTable;
  sessions: SessionTable;
  quotas: QuotaTable;
  globalConfigs: GlobalConfigTable;
  resourceConfigs: ResourceConfigTable;
  tags: TagTable;
  apiJobs: ApiJobTable;
  workflows: WorkflowTable;
  events: EventTable;
  deliveries: DeliveryTable;
  managementNodes: ManagementNodeTable;
  audits: AuditTable;
  webHooks: WebHookTable;
  hosts: HostTable;
  hostCapacities: HostCapacityTable;
  hostCleanups: HostCleanupTable;
  vmInstances: VmInstanceTable;
  vmCreationSpecs: VmCreationSpecTable;
  backupStorages: BackupStorageTable;
  backupStorageZoneRefs: BackupStorageZoneRefTable;
  images: ImageTable;
  imageBackupStorageRefs: ImageBackupStorageRefTable;
  primaryStorages: PrimaryStorageTable;
  primaryStorageClusterRefs: PrimaryStorageClusterRefTable;
  localStorageHostRefs: LocalStorageHostRefTable;
  imageCaches: ImageCacheTable;
  volumes: VolumeTable;
  volumeSnapshots: VolumeSnapshotTable;
  vmCdRoms: VmCdRomTable;
}
