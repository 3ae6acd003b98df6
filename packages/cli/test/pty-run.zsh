# Runs a command on a pseudo-terminal and prints all it wrote, then a line "<exit:N>" with its
# exit status, so a test sees what a person at a terminal sees.
# Usage: zsh -f pty-run.zsh <command> [argument]...
zmodload zsh/zpty
zpty -b tstack_pty "${(j: :)${(@q)argv}}; print -r -- \"<exit:\$?>\""
zpty -r tstack_pty output '*<exit:*>*'
zpty -d tstack_pty
print -r -- "$output"
