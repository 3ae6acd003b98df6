/**
 * Writes JSON-compatible data as YAML 1.2 block style. Strings that YAML would read as another
 * type, or that contain special characters, are written double-quoted with JSON escapes, which
 * are valid YAML escapes, so the output reads back as the same data.
 */
export function toYaml(value: unknown): string {
  return `${render(value, 0).replace(/^\n/, "")}\n`;
}

function render(value: unknown, indent: number): string {
  if (Array.isArray(value)) {
    return renderArray(value, indent);
  }

  if (value !== null && typeof value === "object") {
    return renderObject(value as Record<string, unknown>, indent);
  }

  return ` ${scalar(value)}`;
}

function renderArray(items: unknown[], indent: number): string {
  if (items.length === 0) {
    return " []";
  }

  const pad = " ".repeat(indent);
  return items
    .map((item) => {
      const body = render(item, indent + 2);
      // A nested block starts on a new line; put its first line after the dash instead.
      return `\n${pad}-${body.startsWith("\n") ? ` ${body.trimStart()}` : body}`;
    })
    .join("");
}

function renderObject(object: Record<string, unknown>, indent: number): string {
  const entries = Object.entries(object).filter(([, item]) => item !== undefined);

  if (entries.length === 0) {
    return " {}";
  }

  const pad = " ".repeat(indent);
  return entries
    .map(([key, item]) => `\n${pad}${scalar(key)}:${render(item, indent + 2)}`)
    .join("");
}

function scalar(value: unknown): string {
  if (value === null || value === undefined) {
    return "null";
  }

  if (typeof value === "number" || typeof value === "boolean") {
    return String(value);
  }

  const text = String(value);
  return needsQuotes(text) ? JSON.stringify(text) : text;
}

const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_./ -]*$/;
const OTHER_TYPES =
  /^(true|false|yes|no|on|off|null|~|[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?|0x[0-9a-fA-F]+|0o[0-7]+|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$/i;

function needsQuotes(text: string) {
  return text === "" || !PLAIN.test(text) || text.endsWith(" ") || OTHER_TYPES.test(text);
}
