/** A column of a list table: its header and how to read it from one inventory. */
export interface Column {
  header: string;
  value(row: Record<string, unknown>): unknown;
}

const field = (name: string, header = name): Column => ({
  header,
  value: (row) => row[name],
});

/** Joins one field of every element of a nested list, such as the IP of every VM NIC. */
const nested = (list: string, name: string, header: string): Column => ({
  header,
  value: (row) => {
    const items = row[list];
    return Array.isArray(items)
      ? items
          .map((item) => (item as Record<string, unknown>)[name])
          .filter((value) => value !== undefined && value !== null && value !== "")
          .join(",")
      : "";
  },
});

/**
 * The columns a person scans for, by resource, for resources whose first scalar fields are not
 * those. Resources missing here show their first scalar fields.
 */
export const LIST_COLUMNS: Record<string, Column[]> = {
  VmInstance: [
    field("uuid"),
    field("name"),
    field("state"),
    nested("vmNics", "ip", "ip"),
    field("hypervisorType", "type"),
    field("cpuNum", "cpu"),
    field("memorySize", "memory"),
    field("hostUuid"),
  ],
  Host: [
    field("uuid"),
    field("name"),
    field("managementIp"),
    field("state"),
    field("status"),
    field("hypervisorType", "type"),
    field("clusterUuid"),
  ],
  Volume: [
    field("uuid"),
    field("name"),
    field("type"),
    field("state"),
    field("status"),
    field("size"),
    field("vmInstanceUuid"),
    field("primaryStorageUuid"),
  ],
};
