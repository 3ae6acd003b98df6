# Prints the matches zsh's completion offers for a command line, one per line.
# Usage: zsh -f zsh-complete.zsh <completion script> <scratch dir> <word>...
# The words are typed joined by spaces, unquoted, so they must be plain; an empty last word
# completes a new word.
# It types the words and a TAB into an interactive `zsh -f -i` on a pseudo-terminal (zpty), so
# the completion function runs inside a real completion widget after compinit. A compadd
# wrapper prints every match between markers; the markers are split in the typed text so the
# terminal's echo of that text cannot match them.
zmodload zsh/zpty
zpty -b tstack_completion zsh -f -i
zpty -w tstack_completion "PROMPT= RPROMPT=; unset zle_bracketed_paste"
zpty -w tstack_completion "autoload -Uz compinit; compinit -u -d ${(q)2}/zcompdump"
zpty -w tstack_completion "source ${(q)1}"
zpty -w tstack_completion 'compadd() {
  local -a matches
  builtin compadd -O matches "$@"
  print -rl -- "<""match>"${^matches} "<""end>"
}'
zpty -w -n tstack_completion "${(j: :)argv[3,-1]}"$'\t'
zpty -r tstack_completion output '*<end>*'
zpty -d tstack_completion
print -r -- "$output"
