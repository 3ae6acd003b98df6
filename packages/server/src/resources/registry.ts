import type { Kysely } from "kysely";
import type { Database } from "../db/schema.js";

export type FieldType = "string" | "number" | "boolean" | "date";

/** A relation that dotted query fields may cross, such as `cluster.zone.name`. */
export interface Relation {
  resource: string;
  /** Column of this resource's table. */
  local: string;
  /** Column of the related resource's table. */
  foreign: string;
}

/** Who may read a resource type besides admins. */
export type Visibility = "owner" | "public" | "admin";

/** A queryable resource type: its table, fields, relations and inventory mapping. */
export interface ResourceDefinition {
  type: string;
  table: keyof Database;
  /** Key column; `uuid` for almost every resource. */
  key: string;
  fields: Record<string, FieldType>;
  relations?: Record<string, Relation>;
  visibility: Visibility;
  /** Owner column for the `owner` visibility. */
  ownerColumn?: string;
  /** Resources of this type carry system and user tags. */
  taggable?: boolean;
  defaultSort?: string;
  /** Adds columns from other tables to a page of rows with one batched query. */
  enrich?(
    db: Kysely<Database>,
    rows: Record<string, unknown>[],
  ): Promise<Record<string, unknown>[]>;
  toInventory(row: Record<string, unknown>): Record<string, unknown>;
}

/** Inventory fields that another module adds to a resource type, such as a VM's volumes. */
export interface ResourceExtension {
  /** Adds columns to a page of rows with one batched query. */
  enrich(db: Kysely<Database>, rows: Record<string, unknown>[]): Promise<Record<string, unknown>[]>;
  /** Adds fields to the inventory built from an enriched row. */
  extendInventory(row: Record<string, unknown>, inventory: Record<string, unknown>): void;
}

const definitions = new Map<string, ResourceDefinition>();
const extensions = new Map<string, ResourceExtension[]>();

export function defineResource(definition: ResourceDefinition) {
  let extended = definition;

  for (const extension of extensions.get(definition.type) ?? []) {
    extended = withExtension(extended, extension);
  }

  definitions.set(definition.type, extended);
}

/**
 * Adds an extension to a resource type, whether the type is defined before or after, so a
 * module can show its data in another module's inventory without editing that module.
 */
export function extendResource(type: string, extension: ResourceExtension) {
  extensions.set(type, [...(extensions.get(type) ?? []), extension]);
  const definition = definitions.get(type);

  if (definition) {
    definitions.set(type, withExtension(definition, extension));
  }
}

function withExtension(
  definition: ResourceDefinition,
  extension: ResourceExtension,
): ResourceDefinition {
  return {
    ...definition,
    async enrich(db, rows) {
      const enriched = definition.enrich ? await definition.enrich(db, rows) : rows;
      return extension.enrich(db, enriched);
    },
    toInventory(row) {
      const inventory = definition.toInventory(row);
      extension.extendInventory(row, inventory);
      return inventory;
    },
  };
}

export function resourceDefinition(type: string): ResourceDefinition {
  const definition = definitions.get(type);

  if (!definition) {
    throw new Error(`resource type ${type} is not registered`);
  }

  return definition;
}

export function findResourceDefinition(type: string) {
  return definitions.get(type);
}

/** Fields of the common resource columns. */
export const commonFields: Record<string, FieldType> = {
  uuid: "string",
  name: "string",
  description: "string",
  createDate: "date",
  lastOpDate: "date",
};

/** Copies the common columns into an inventory. */
export function commonInventory(row: Record<string, unknown>) {
  return {
    uuid: row.uuid,
    name: row.name,
    description: row.description ?? null,
    createDate: row.createDate,
    lastOpDate: row.lastOpDate,
  };
}
