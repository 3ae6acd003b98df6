import type { TSchema } from "@sinclair/typebox";
import { sha512Hex } from "@tstack/api";
import { kebab, type ResourceEntry } from "@tstack/sdk";
import { InvalidArgumentError, Option } from "commander";

/** The command-line flag of one schema property. */
export interface ParamFlag {
  /** Property name in the API body, such as `zoneUuid`. */
  property: string;
  /** Long flag name without dashes, such as `zone`. */
  flag: string;
  kind: "string" | "integer" | "number" | "boolean" | "json";
  array: boolean;
  required: boolean;
  choices?: string[];
  /** The API takes the SHA-512 hex of this value, so the flag takes clear text and hashes it. */
  hashed: boolean;
  /** The resource a `...Uuid` property refers to; its value may be a name. */
  reference?: ResourceEntry;
  description?: string;
}

/** Flags every command owns; a parameter with one of these names gets a `param-` prefix. */
export const RESERVED_FLAGS = new Set([
  "output",
  "query",
  "limit",
  "sort",
  "start",
  "wait",
  "system-tag",
  "user-tag",
  "delete-mode",
  "timeout",
  "help",
  "endpoint",
]);

/** Properties that the common `--system-tag` and `--user-tag` flags carry instead. */
const TAG_PROPERTIES = new Set(["systemTags", "userTags"]);

/** Maps the properties of an object schema to flags. */
export function paramFlags(schema: TSchema | undefined, resources: ResourceEntry[]): ParamFlag[] {
  const properties = (schema?.properties ?? {}) as Record<string, TSchema>;
  const required = new Set<string>((schema?.required as string[] | undefined) ?? []);

  return Object.entries(properties)
    .filter(([property]) => !TAG_PROPERTIES.has(property))
    .map(([property, propertySchema]) =>
      toFlag(property, propertySchema, required.has(property), resources),
    );
}

/**
 * Returns the resource a property such as `zoneUuid` or `l3NetworkUuids` refers to. A qualified
 * name such as `defaultL3NetworkUuid` or `rootVolumeUuid` refers to the resource of its longest
 * camel-case tail that names one.
 */
export function referencedResource(name: string, resources: ResourceEntry[]) {
  const match = /^(.+)Uuids?$/.exec(name);

  if (!match || match[1] === "resource") {
    return undefined;
  }

  const words = match[1]!.split(/(?=[A-Z])/);

  for (let start = 0; start < words.length; start++) {
    const tail = words.slice(start).join("");
    const type = tail.charAt(0).toUpperCase() + tail.slice(1);
    const entry = resources.find((candidate) => candidate.name === type && candidate.query);

    if (entry) {
      return entry;
    }
  }

  return undefined;
}

/**
 * Returns the flag or argument name of a property that refers to a resource: the resource's
 * command for `zoneUuid`, and the kebab-case qualified name for `defaultL3NetworkUuid`, so it
 * cannot clash with the flag of `l3NetworkUuids`.
 */
export function referenceName(property: string, reference: ResourceEntry) {
  const prefix = property.replace(/Uuids?$/, "");
  return prefix.toLowerCase() === reference.name.toLowerCase() ? reference.command : kebab(prefix);
}

function toFlag(
  property: string,
  schema: TSchema,
  required: boolean,
  resources: ResourceEntry[],
): ParamFlag {
  const array = schema.type === "array";
  const item = (array ? schema.items : schema) as TSchema;
  const reference = referencedResource(property, resources);
  let flag = reference ? referenceName(property, reference) : kebab(property);

  if (RESERVED_FLAGS.has(flag)) {
    flag = `param-${flag}`;
  }

  return {
    property,
    flag,
    kind: kindOf(item),
    array,
    required,
    choices: choicesOf(item),
    hashed: item.type === "string" && /SHA-512/.test(String(item.description)),
    reference,
    description: item.description ?? schema.description,
  };
}

function kindOf(schema: TSchema): ParamFlag["kind"] {
  if (["string", "integer", "number", "boolean"].includes(schema.type)) {
    return schema.type;
  }

  return choicesOf(schema) ? "string" : "json";
}

function choicesOf(schema: TSchema): string[] | undefined {
  if (typeof schema.const === "string") {
    return [schema.const];
  }

  const variants = schema.anyOf as TSchema[] | undefined;

  if (variants?.every((variant) => typeof variant.const === "string")) {
    return variants.map((variant) => variant.const as string);
  }

  return undefined;
}

/** Builds the commander option of a flag, with parsing of integers, numbers and JSON. */
export function toOption(param: ParamFlag): Option[] {
  const value = param.reference ? `<${param.reference.command}>` : `<${param.kind}>`;
  const option = new Option(
    param.kind === "boolean" ? `--${param.flag}` : `--${param.flag} ${value}`,
    describe(param),
  );

  if (param.choices) {
    option.choices(param.choices);
  }

  if (param.kind !== "boolean" || param.array) {
    option.argParser(parserOf(param));
  }

  if (param.required) {
    option.makeOptionMandatory();
  }

  if (param.kind === "boolean" && !param.required) {
    return [option, new Option(`--no-${param.flag}`, `set ${param.property} to false`)];
  }

  return [option];
}

function describe(param: ParamFlag) {
  const parts = [param.property];

  if (param.reference) {
    parts.push(`(${param.reference.name} name or uuid)`);
  }

  if (param.hashed) {
    parts.push("- clear text, sent as its SHA-512 hex");
  } else if (param.description) {
    parts.push(`- ${param.description}`);
  }

  if (param.array) {
    parts.push("(repeatable)");
  }

  return parts.join(" ");
}

function parserOf(param: ParamFlag) {
  const parseOne = (text: string) => parseValue(param, text);

  if (param.array) {
    return (text: string, previous: unknown) => [
      ...(Array.isArray(previous) ? previous : []),
      parseOne(text),
    ];
  }

  return parseOne;
}

function parseValue(param: ParamFlag, text: string): unknown {
  if (param.choices && !param.choices.includes(text)) {
    throw new InvalidArgumentError(`expected one of ${param.choices.join(", ")}`);
  }

  switch (param.kind) {
    case "integer":
      if (!/^-?\d+$/.test(text)) {
        throw new InvalidArgumentError(`'${text}' is not an integer`);
      }

      return Number(text);
    case "number":
      if (text.trim() === "" || !Number.isFinite(Number(text))) {
        throw new InvalidArgumentError(`'${text}' is not a number`);
      }

      return Number(text);
    case "boolean":
      if (!["true", "false"].includes(text)) {
        throw new InvalidArgumentError(`'${text}' is not true or false`);
      }

      return text === "true";
    case "json":
      try {
        return JSON.parse(text);
      } catch {
        throw new InvalidArgumentError(`'${text}' is not valid JSON`);
      }
    default:
      return param.hashed ? sha512Hex(text) : text;
  }
}

/** Converts a flag name to the key commander stores its value under. */
export function optionKey(flag: string) {
  return flag.replace(/-([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
}

/** Parses a count or offset flag. */
export function nonNegativeInteger(value: string) {
  if (!/^\d+$/.test(value)) {
    throw new InvalidArgumentError(`'${value}' is not a non-negative integer`);
  }

  return Number(value);
}
