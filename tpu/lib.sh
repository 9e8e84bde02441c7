# shellcheck shell=bash disable=SC2034 # (variables set here are read by the scripts that source this file)
# Sourced by every tpu/*.sh script: settings, argument parsing, --dry-run and the gcloud wrappers.
# Precedence: command-line flags, then environment variables, then the defaults below.

TPU_NAME="${TPU_NAME:-xlt-jax}"
ZONE="${ZONE:-europe-west4-a}"
ACCELERATOR="${ACCELERATOR:-v3-8}"
RUNTIME="${RUNTIME:-tpu-ubuntu2204-base}"
PROJECT="${PROJECT:-}"
REMOTE_DIR="${REMOTE_DIR:-xlt_jax}" # the checkout on every worker, relative to the worker's home
DRY_RUN=0
TPU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TPU_DIR/.." && pwd)"
ARGS=()        # positional arguments, then everything after `--`
COMMON_ARGS=() # the common options as parsed, to forward to another tpu/ script

COMMON_USAGE="Common options (or the environment variable in parentheses):
  --name NAME          TPU VM / node name (TPU_NAME; default xlt-jax)
  --zone ZONE          zone (ZONE; default europe-west4-a)
  --accelerator TYPE   accelerator type, e.g. v3-8, v4-32 (ACCELERATOR; default v3-8)
  --version RUNTIME    TPU software version (RUNTIME; default tpu-ubuntu2204-base)
  --project PROJECT    GCP project (PROJECT; default: gcloud's configured project)
  --remote-dir DIR     the checkout on each worker, relative to its home (REMOTE_DIR; default xlt_jax)
  --dry-run            print the exact commands, run nothing
  -h, --help           this help"

die() {
  echo "error: $*" >&2
  exit 2
}

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

usage() {
  printf '%s\n\n%s\n' "$USAGE" "$COMMON_USAGE"
}

# `need_value "$@"`: an error unless the option in $1 is followed by a value.
need_value() {
  [[ $# -ge 2 && $2 != --* ]] || die "$1 needs a value (see --help)"
}

# parse_args "$@": common options here; a script's own options through its `script_option` function, which
# sets SHIFT to the number of words it consumed (0: not its option). `--opt=value` equals `--opt value`.
parse_args() {
  while (($#)); do
    if [[ $1 == --?*=* ]]; then
      set -- "${1%%=*}" "${1#*=}" "${@:2}"
    fi
    case "$1" in
      -h | --help)
        usage
        exit 0
        ;;
      --dry-run) DRY_RUN=1 && shift ;;
      --name) need_value "$@" && TPU_NAME="$2" && shift 2 ;;
      --zone) need_value "$@" && ZONE="$2" && shift 2 ;;
      --accelerator) need_value "$@" && ACCELERATOR="$2" && shift 2 ;;
      --version) need_value "$@" && RUNTIME="$2" && shift 2 ;;
      --project) need_value "$@" && PROJECT="$2" && shift 2 ;;
      --remote-dir) need_value "$@" && REMOTE_DIR="$2" && shift 2 ;;
      --)
        shift
        ARGS+=("$@")
        break
        ;;
      -*)
        SHIFT=0
        if declare -F script_option >/dev/null; then
          script_option "$@"
        fi
        ((SHIFT > 0)) || die "unknown option $1 (see --help)"
        shift "$SHIFT"
        ;;
      *) ARGS+=("$1") && shift ;;
    esac
  done
  COMMON_ARGS=(--name "$TPU_NAME" --zone "$ZONE" --accelerator "$ACCELERATOR" --version "$RUNTIME"
    --remote-dir "$REMOTE_DIR")
  if [[ -n $PROJECT ]]; then COMMON_ARGS+=(--project "$PROJECT"); fi
  if ((DRY_RUN)); then COMMON_ARGS+=(--dry-run); fi
}

# A word as the shell reads it back: bare when safe, else single-quoted.
quote_word() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# The command as one line that a shell would run exactly as given.
quote_cmd() {
  local out=() word
  for word in "$@"; do out+=("$(quote_word "$word")"); done
  printf '%s\n' "${out[*]}"
}

# Run a command, or only print it with --dry-run.
run() {
  if ((DRY_RUN)); then
    quote_cmd "$@"
  else
    "$@"
  fi
}

# gcloud with the project (when set) appended; printed instead of run with --dry-run.
gc() {
  if [[ -n $PROJECT ]]; then
    run gcloud "$@" --project "$PROJECT"
  else
    run gcloud "$@"
  fi
}

# on_workers WORKER COMMAND: run a shell command on worker WORKER (a number or `all`) of the TPU VM.
on_workers() {
  gc compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker="$1" --command "$2"
}

# remote_cmd WORDS...: `cd REMOTE_DIR && WORDS` quoted for the workers' shell.
remote_cmd() {
  printf 'cd %s && %s' "$(quote_word "$REMOTE_DIR")" "$(quote_cmd "$@")"
}

# The VM's state (READY, CREATING, PREEMPTED, TERMINATED, ...), NOT_FOUND, or UNKNOWN if gcloud failed otherwise.
vm_state() {
  local out err status=0
  err="$(mktemp)"
  out="$(gc compute tpus tpu-vm describe "$TPU_NAME" --zone "$ZONE" --format='value(state)' 2>"$err")" || status=$?
  if ((status == 0)); then
    printf '%s\n' "${out:-UNKNOWN}"
  elif grep -qi 'not.found' "$err"; then
    echo NOT_FOUND
  else
    cat "$err" >&2
    echo UNKNOWN
  fi
  rm -f "$err"
}

# The run's status on worker 0: running | exit N | dead (no process, no exit status) | none (never started).
run_status() {
  local out
  out="$(on_workers 0 "$(remote_cmd bash tpu/remote.sh status "$1")")" || out=unreachable
  printf '%s\n' "$out" | tail -n 1
}

# The value of --workdir in a command (`--workdir DIR` or `--workdir=DIR`), or nothing.
workdir_of() {
  while (($#)); do
    case "$1" in
      --workdir=*) printf '%s' "${1#--workdir=}" && return ;;
      --workdir) printf '%s' "${2:-}" && return ;;
    esac
    shift
  done
}

# A run name (log and status files on the workers) from a command's workdir: its last path component.
run_name_of() {
  local dir
  dir="$(workdir_of "$@")"
  [[ -n $dir ]] || die "the command has no --workdir; name the run with --run NAME"
  dir="${dir%/}"
  printf '%s' "${dir##*/}" | tr -c 'A-Za-z0-9_.-' '_'
}
