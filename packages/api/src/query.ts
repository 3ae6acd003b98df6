/** Operators of ZStack's `q=` query conditions. */
export const QUERY_OPERATORS = [
  "=",
  "!=",
  ">",
  ">=",
  "<",
  "<=",
  "?=",
  "!?=",
  "~=",
  "!~=",
  "is null",
  "not null",
] as const;

export type QueryOperator = (typeof QUERY_OPERATORS)[number];

/** One parsed `q=` condition. */
export interface QueryCondition {
  field: string;
  op: QueryOperator;
  /** The raw value; lists for `?=` and `!?=` are split on commas by the engine. */
  value: string;
}

// Longer operators first, so that `!?=` is never read as `!` + `?=`.
const INFIX_OPERATORS: QueryOperator[] = [
  "!?=",
  "!~=",
  "!=",
  ">=",
  "<=",
  "?=",
  "~=",
  "=",
  ">",
  "<",
];

const FIELD_PATTERN = /^(__systemTag__|__userTag__|[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*)$/;

/**
 * Parses one `q=` condition such as `state=Running`, `name~=web%` or `hostUuid not null`.
 * Returns an error text naming the condition when it cannot be parsed.
 */
export function parseCondition(text: string): QueryCondition | string {
  for (const suffix of [" is null", " not null"] as const) {
    if (text.endsWith(suffix)) {
      const field = text.slice(0, -suffix.length);
      return checkField(field, text) ?? { field, op: suffix.trim() as QueryOperator, value: "" };
    }
  }

  let best: { index: number; op: QueryOperator } | undefined;

  for (const op of INFIX_OPERATORS) {
    const index = text.indexOf(op);

    if (index > 0 && (best === undefined || index < best.index)) {
      best = { index, op };
    }
  }

  if (!best) {
    return `invalid query condition '${text}': expected <field><operator><value> with an operator among ${QUERY_OPERATORS.join(" ")}`;
  }

  const field = text.slice(0, best.index);
  const value = text.slice(best.index + best.op.length);
  return checkField(field, text) ?? { field, op: best.op, value };
}

function checkField(field: string, text: string): string | undefined {
  if (FIELD_PATTERN.test(field)) {
    return undefined;
  }

  return `invalid field name '${field}' in query condition '${text}'`;
}
