import type { Column } from "./columns.js";
import { UsageError } from "./errors.js";
import { toYaml } from "./yaml.js";

export const OUTPUT_FORMATS = ["table", "json", "yaml"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Columns a list table leaves out, because they are long and rarely what a person scans for. */
const HIDDEN_COLUMNS = new Set(["description", "createDate", "lastOpDate"]);
const MAX_COLUMNS = 8;

/** Checks the `--output` value. */
export function outputFormat(value: string | undefined): OutputFormat {
  const format = (value ?? "table") as OutputFormat;

  if (!OUTPUT_FORMATS.includes(format)) {
    throw new UsageError(
      `invalid output format '${value}': expected one of ${OUTPUT_FORMATS.join(", ")}`,
    );
  }

  return format;
}

/**
 * Formats an API result. Results with `inventories` print the list and results with `inventory`
 * print that object, in every format, so scripts get the resource itself.
 */
export function formatResult(result: unknown, format: OutputFormat, columns?: Column[]): string {
  const data = unwrap(result);

  if (format === "json") {
    return `${JSON.stringify(data, null, 2)}\n`;
  }

  if (format === "yaml") {
    return toYaml(data);
  }

  return Array.isArray(data) ? listTable(data, columns) : objectTable(data);
}

function unwrap(result: unknown) {
  const body = result as { inventories?: unknown[]; inventory?: unknown };

  if (Array.isArray(body?.inventories)) {
    return body.inventories;
  }

  return body?.inventory !== undefined ? body.inventory : result;
}

/** Formats a table with one row per item: the given columns, else the first scalar fields. */
export function listTable(items: unknown[], columns?: Column[]): string {
  if (items.length === 0) {
    return "";
  }

  const rows = items as Array<Record<string, unknown>>;
  const shown = columns ?? scalarColumns(rows);
  const cells = rows.map((row) => shown.map((column) => cell(column.value(row))));
  return alignRows([shown.map((column) => column.header.toUpperCase()), ...cells]);
}

function scalarColumns(rows: Array<Record<string, unknown>>): Column[] {
  return Object.keys(rows[0] ?? {})
    .filter((key) => !HIDDEN_COLUMNS.has(key) && rows.every((row) => isScalar(row[key])))
    .slice(0, MAX_COLUMNS)
    .map((key) => ({ header: key, value: (row) => row[key] }));
}

function objectTable(data: unknown): string {
  if (data === null || typeof data !== "object") {
    return `${cell(data)}\n`;
  }

  const rows = Object.entries(data as Record<string, unknown>).map(([key, value]) => [
    key,
    isScalar(value) ? cell(value) : JSON.stringify(value),
  ]);
  return alignRows(rows);
}

function alignRows(rows: string[][]) {
  const widths: number[] = [];

  for (const row of rows) {
    row.forEach((text, index) => {
      widths[index] = Math.max(widths[index] ?? 0, text.length);
    });
  }

  const lines = rows.map((row) =>
    row
      .map((text, index) => (index === row.length - 1 ? text : text.padEnd(widths[index]!)))
      .join("  "),
  );
  return `${lines.join("\n")}\n`;
}

function isScalar(value: unknown) {
  return value === null || value === undefined || typeof value !== "object";
}

function cell(value: unknown) {
  return value === null || value === undefined ? "" : String(value);
}
