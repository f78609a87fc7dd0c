# bash completion for tlm
# Needs nothing but bash (not the bash-completion package's helpers).
_tlm() {
  local cword=$COMP_CWORD
  local -a words=("${COMP_WORDS[@]}")
  local cur="${words[cword]}" prev="${words[cword-1]}"
  local commands="create get renew revoke list exchange revoke-prefix job health keep"
  local global="--addr --api-key-file --config --timeout-ms --json --help"
  local sub="" i
  for ((i = 1; i < cword; i++)); do
    case "${words[i]}" in
      --) return ;;
      create|get|renew|revoke|list|exchange|revoke-prefix|job|health|keep)
        sub="${words[i]}"; break ;;
    esac
  done
  case "$prev" in
    --addr|--ttl|--role|--tag|-t|--option|-o|--options|--meta|--description|--lease-id|--env|--stale|--jitter|--backoff-max-ms|--ready-timeout-ms|--page-size|--backend|-b|--timeout-ms)
      return ;;
    --api-key-file|--config|--cache|--output|--events|--token-file)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --state) COMPREPLY=($(compgen -W "active revoking irrevocable" -- "$cur")); return ;;
    --on-change) COMPREPLY=($(compgen -W "restart none" -- "$cur")); return ;;
  esac
  local create_flags="--backend --ttl --role --renewable --tag --option --options --meta --description"
  local flags
  case "$sub" in
    "") COMPREPLY=($(compgen -W "$commands $global" -- "$cur")); return ;;
    create) flags="$create_flags --value-only" ;;
    get) flags="--value-only" ;;
    renew) flags="--ttl" ;;
    revoke) flags="--force" ;;
    list) flags="--backend --tag --state --page-size" ;;
    exchange) flags="--token-file --meta --value-only" ;;
    revoke-prefix) flags="--backend --tag" ;;
    keep) flags="$create_flags --lease-id --cache --output --env --events --on-change --stale --jitter --backoff-max-ms --ready-timeout-ms --no-revoke --no-recreate" ;;
  esac
  COMPREPLY=($(compgen -W "$flags --help" -- "$cur"))
}
complete -F _tlm tlm
