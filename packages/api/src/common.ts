import { type TSchema, Type } from "@sinclair/typebox";

/** A ZStack UUID: 32 lower-case hexadecimal characters, no dashes. */
export const Uuid = Type.String({
  pattern: "^[0-9a-f]{32}$",
  description: "32 lower-case hex characters",
});

/** A resource name: 1 to 255 characters with no control characters. */
export const Name = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: "^[^\\x00-\\x1f\\x7f]*$",
});

export const Description = Type.String({ maxLength: 2048 });

/** An ISO 8601 date with a zone. */
export const DateTime = Type.String({ format: "date-time" });

export const SystemTags = Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), {
  maxItems: 256,
});

/** Fields every create API accepts beside its own. */
export const CreateCommon = {
  resourceUuid: Type.Optional(Uuid),
  systemTags: Type.Optional(SystemTags),
  userTags: Type.Optional(SystemTags),
  tagUuids: Type.Optional(Type.Array(Uuid, { maxItems: 256 })),
};

/** Fields every inventory has. */
export const InventoryCommon = {
  uuid: Uuid,
  name: Type.String(),
  description: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  createDate: DateTime,
  lastOpDate: DateTime,
};

/** Builds a strict object schema: unknown fields are invalid arguments. */
export function Strict<T extends Record<string, TSchema>>(properties: T) {
  return Type.Object(properties, { additionalProperties: false });
}

export const StateEvent = (events: string[]) =>
  Type.Union(events.map((event) => Type.Literal(event)));
