/**
 * The one place that turns values into text for a remote POSIX shell. SSH exec takes a single
 * command string, so every value in it goes through `quote`, by way of `sh` or `shellCommand`.
 */

/** Quotes a value as one shell word: wrapped in single quotes, each `'` written as `'\''`. */
export function quote(value: string) {
  if (value.includes("\0")) {
    throw new Error("a shell word cannot contain a NUL byte");
  }

  return `'${value.replaceAll("'", "'\\''")}'`;
}

/** Joins argv into a command line in which every argument is one quoted word. */
export function shellCommand(argv: readonly string[]) {
  if (argv.length === 0) {
    throw new Error("a command needs at least the program name");
  }

  return argv.map(quote).join(" ");
}

/**
 * Builds a script from fixed shell text and values: `sh\`test -f ${path}\`` quotes `path`.
 * Only the literal parts of the template reach the shell unquoted, and those are our source code.
 */
export function sh(strings: TemplateStringsArray, ...values: (string | number)[]) {
  return strings.reduce(
    (script, part, index) =>
      index === 0 ? part : `${script}${quote(String(values[index - 1]))}${part}`,
    "",
  );
}
