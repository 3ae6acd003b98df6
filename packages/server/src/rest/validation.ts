import type { TSchema } from "@sinclair/typebox";
import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { ApiError } from "@tstack/api";

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/**
 * Checks `value` against a route's schema and throws an invalid-argument error that names the
 * field path, the value and what was expected. `label` is the body key, such as `params`.
 */
export function validate(schema: TSchema, value: unknown, label: string) {
  let check = compiled.get(schema);

  if (!check) {
    check = TypeCompiler.Compile(schema);
    compiled.set(schema, check);
  }

  if (check.Check(value)) {
    return;
  }

  const messages = [...check.Errors(value)].slice(0, 5).map((error) => {
    const field = `${label}${error.path.replaceAll("/", ".")}`;
    const shown =
      error.value === undefined ? "" : ` (got ${JSON.stringify(error.value)?.slice(0, 100)})`;
    return `${field}: ${describe(error.message, error.schema)}${shown}`;
  });
  throw new ApiError("invalidArgument", `invalid ${label}: ${messages.join("; ")}`);
}

function describe(message: string, schema: TSchema): string {
  if (message === "Unexpected property") {
    return "unknown field; remove it";
  }

  if (typeof schema.pattern === "string" && schema.description) {
    return `${message}: expected ${schema.description}`;
  }

  return message;
}
