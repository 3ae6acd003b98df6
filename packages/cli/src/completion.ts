import type { Command } from "commander";
import type { CliContext } from "./context.js";
import { UsageError } from "./errors.js";

/** Adds `tstack completion bash|zsh`, which prints a script built from the command tree. */
export function addCompletionCommand(program: Command, context: CliContext) {
  program
    .command("completion")
    .description("Print a shell completion script: source <(tstack completion bash)")
    .argument("<shell>", "bash or zsh")
    .action((shell: string) => {
      if (shell !== "bash" && shell !== "zsh") {
        throw new UsageError(`unsupported shell '${shell}': expected bash or zsh`);
      }

      const cases = completionCases(program);
      context.write(shell === "bash" ? bashScript(cases) : zshScript(cases));
    });
}

/** Maps "", "<command>" and "<command> <subcommand>" to the words that may follow. */
export function completionCases(program: Command): Map<string, string[]> {
  const cases = new Map<string, string[]>();
  const globalFlags = ["--output"];
  const namesOf = (command: Command) => [command.name(), ...command.aliases()];
  cases.set("", [...program.commands.flatMap(namesOf), ...flagsOf(program)]);

  // An alias such as `vm` for `vm-instance` gets the same arms as the command's own name.
  for (const command of program.commands) {
    const children = command.commands.map((child) => child.name());

    for (const name of namesOf(command)) {
      cases.set(name, children.length > 0 ? children : [...flagsOf(command), ...globalFlags]);

      for (const child of command.commands) {
        cases.set(`${name} ${child.name()}`, [...flagsOf(child), ...globalFlags]);
      }
    }
  }

  return cases;
}

function flagsOf(command: Command) {
  return command.options.map((option) => option.long).filter((flag): flag is string => !!flag);
}

function caseArms(cases: Map<string, string[]>, indent: string) {
  return [...cases]
    .map(([key, words]) => `${indent}"${key}") choices="${words.join(" ")}" ;;`)
    .join("\n");
}

function bashScript(cases: Map<string, string[]>) {
  return `# bash completion for tstack; load it with: source <(tstack completion bash)
_tstack() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" key="" count=0 skip=0 i word choices=""

  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"

    if ((skip)); then
      skip=0
    elif [[ "$word" == "-o" || "$word" == "--output" ]]; then
      skip=1
    elif [[ "$word" != -* && count -lt 2 ]]; then
      key="\${key:+$key }$word"
      count=$((count + 1))
    fi
  done

  case "$key" in
${caseArms(cases, "    ")}
  esac

  COMPREPLY=($(compgen -W "$choices" -- "$cur"))
}
complete -F _tstack tstack
`;
}

function zshScript(cases: Map<string, string[]>) {
  return `#compdef tstack
# zsh completion for tstack; load it with: source <(tstack completion zsh)
_tstack() {
  local -a found
  local key="" choices="" word skip=0 i

  for ((i = 2; i < CURRENT; i++)); do
    word="\${words[i]}"

    if ((skip)); then
      skip=0
    elif [[ "$word" == "-o" || "$word" == "--output" ]]; then
      skip=1
    elif [[ "$word" != -* && \${#found} -lt 2 ]]; then
      found+=("$word")
    fi
  done

  key="\${(j: :)found}"

  case "$key" in
${caseArms(cases, "    ")}
  esac

  compadd -- \${=choices}
}
compdef _tstack tstack
`;
}
