import type { Kysely } from "kysely";
import type { Database } from "../db/schema.js";
import { now } from "./ids.js";

export type ConfigType = "Integer" | "Long" | "Float" | "Boolean" | "String";

/** One global configuration, declared in code by the module that reads it. */
export interface ConfigDefinition {
  category: string;
  name: string;
  type: ConfigType;
  defaultValue: string;
  description: string;
  /** Inclusive bounds for numeric types. */
  range?: [number, number];
  validValues?: string[];
}

/** Typed, validated global configuration with per-resource overrides, applied live. */
export class GlobalConfig {
  private readonly definitions = new Map<string, ConfigDefinition>();
  private readonly values = new Map<string, string>();
  private readonly listeners = new Map<string, Array<(value: string) => void>>();

  constructor(private readonly db: Kysely<Database>) {}

  define(definition: ConfigDefinition) {
    const key = configKey(definition.category, definition.name);
    this.definitions.set(key, definition);
    this.values.set(key, definition.defaultValue);
  }

  definition(category: string, name: string) {
    return this.definitions.get(configKey(category, name));
  }

  all() {
    return [...this.definitions.values()];
  }

  /** Writes missing definitions to the database and loads the stored values. */
  async load() {
    const stamp = now();
    const rows = await this.db.selectFrom("globalConfigs").selectAll().execute();
    const stored = new Set(rows.map((row) => configKey(row.category, row.name)));

    for (const row of rows) {
      const key = configKey(row.category, row.name);

      if (this.definitions.has(key)) {
        this.values.set(key, row.value);
      }
    }

    const missing = this.all().filter((d) => !stored.has(configKey(d.category, d.name)));

    for (const definition of missing) {
      await this.db
        .insertInto("globalConfigs")
        .values({
          category: definition.category,
          name: definition.name,
          value: definition.defaultValue,
          lastOpDate: stamp,
        })
        .onConflict((conflict) => conflict.columns(["category", "name"]).doNothing())
        .execute();
    }
  }

  /** Returns the current value as a string. Throws for an undeclared configuration. */
  get(category: string, name: string): string {
    const value = this.values.get(configKey(category, name));

    if (value === undefined) {
      throw new Error(`global configuration ${category}.${name} is not declared`);
    }

    return value;
  }

  number(category: string, name: string): number {
    return Number(this.get(category, name));
  }

  boolean(category: string, name: string): boolean {
    return this.get(category, name) === "true";
  }

  /** Returns a per-resource override when one exists, else the global value. */
  async forResource(category: string, name: string, resourceUuid: string): Promise<string> {
    const row = await this.db
      .selectFrom("resourceConfigs")
      .select("value")
      .where("resourceUuid", "=", resourceUuid)
      .where("category", "=", category)
      .where("name", "=", name)
      .executeTakeFirst();
    return row?.value ?? this.get(category, name);
  }

  /** Returns an error text when `value` is not valid for the configuration, else undefined. */
  validate(category: string, name: string, value: string): string | undefined {
    const definition = this.definition(category, name);

    if (!definition) {
      return `global configuration ${category}.${name} does not exist; query /zstack/v1/global-configurations for the list`;
    }

    return validateValue(definition, value);
  }

  /** Applies a value already stored in the database and tells the listeners. */
  apply(category: string, name: string, value: string) {
    const key = configKey(category, name);
    this.values.set(key, value);

    for (const listener of this.listeners.get(key) ?? []) {
      listener(value);
    }
  }

  onChange(category: string, name: string, listener: (value: string) => void) {
    const key = configKey(category, name);
    this.listeners.set(key, [...(this.listeners.get(key) ?? []), listener]);
  }
}

function configKey(category: string, name: string) {
  return `${category}\u0000${name}`;
}

function validateValue(definition: ConfigDefinition, value: string): string | undefined {
  const label = `${definition.category}.${definition.name}`;

  if (definition.validValues && !definition.validValues.includes(value)) {
    return `invalid value '${value}' for ${label}: expected one of ${definition.validValues.join(", ")}`;
  }

  if (definition.type === "Boolean" && value !== "true" && value !== "false") {
    return `invalid value '${value}' for ${label}: expected true or false`;
  }

  if (definition.type === "Integer" || definition.type === "Long" || definition.type === "Float") {
    const number = Number(value);
    const integral = definition.type !== "Float";

    if (
      value.trim() === "" ||
      !Number.isFinite(number) ||
      (integral && !Number.isInteger(number))
    ) {
      return `invalid value '${value}' for ${label}: expected ${integral ? "an integer" : "a number"}`;
    }

    if (definition.range && (number < definition.range[0] || number > definition.range[1])) {
      return `invalid value '${value}' for ${label}: expected a value from ${definition.range[0]} to ${definition.range[1]}`;
    }
  }

  return undefined;
}
