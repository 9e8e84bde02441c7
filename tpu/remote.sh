#!/usr/bin/env bash
# The worker side of the tpu/ scripts: runs ON each TPU worker, inside the checkout (they call it through
# `gcloud compute tpus tpu-vm ssh --command`). Keeping it a file rather than an inline string means one
# level of quoting, shellcheck, and a test that runs it locally.
set -euo pipefail

USAGE="Usage (on a worker, from the checkout):
  tpu/remote.sh install [--extras EXTRAS] [--python PY] [--no-data]
      create .venv (PY, default python3.11: the project needs >= 3.11, Ubuntu 22.04 has 3.10; installed
      with apt when missing), pip install -e '.[EXTRAS]' (default tfds,tpu), fill \$XLT_DATA_DIR
  tpu/remote.sh start RUN [--sync URL] [--sync-every SECONDS] [--env KEY=VALUE]... -- COMMAND...
      start COMMAND in the background (.venv active, XLT_DISTRIBUTED_INITIALIZE=1), output to
      logs/RUN.log; does nothing if RUN is already running. With --sync, first restore the command's
      --workdir from URL (gs://...) if it exists there, then worker 0 copies the workdir to URL every
      SECONDS (default 600) and once more at the end, so a run survives the loss of its VM.
  tpu/remote.sh status RUN
      prints running | exit N | dead (no process, no exit status: killed or rebooted) | none
Environment: XLT_DATA_DIR (default \$HOME/xlt_data), XLT_WORKER_ID (default: the TPU metadata server)."

cd "$(dirname "$0")/.."
LOGS=logs
export XLT_DATA_DIR="${XLT_DATA_DIR:-$HOME/xlt_data}"

die() {
  echo "error: $*" >&2
  exit 2
}

worker_id() {
  if [[ -n ${XLT_WORKER_ID:-} ]]; then
    echo "$XLT_WORKER_ID"
    return
  fi
  curl -sf --max-time 5 -H Metadata-Flavor:Google \
    http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number || echo 0
}

workdir_of() {
  while (($#)); do
    case "$1" in
      --workdir=*) printf '%s' "${1#--workdir=}" && return ;;
      --workdir) printf '%s' "${2:-}" && return ;;
    esac
    shift
  done
}

status() {
  local run=$1 state pid=""
  if [[ ! -f $LOGS/$run.status ]]; then
    echo none
    return
  fi
  state="$(<"$LOGS/$run.status")"
  if [[ $state != running ]]; then
    echo "$state"
    return
  fi
  if [[ -f $LOGS/$run.pid ]]; then pid="$(<"$LOGS/$run.pid")"; fi
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then echo running; else echo dead; fi
}

install() {
  local extras=tfds,tpu python=python3.11 data=1
  while (($#)); do
    case "$1" in
      --extras) extras="$2" && shift 2 ;;
      --python) python="$2" && shift 2 ;;
      --no-data) data=0 && shift ;;
      *) die "install: unknown option $1" ;;
    esac
  done
  if ! command -v "$python" >/dev/null; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$python" "$python-venv"
  fi
  [[ -x .venv/bin/python ]] || "$python" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[$extras]"
  if ((data)); then .venv/bin/python -m xlt_jax.data.download; fi
}

push() { gcloud storage rsync -r --delete-unmatched-destination-objects "$1" "$2"; }

start() {
  local run=$1 sync="" every=600 workdir
  shift
  while (($#)); do
    case "$1" in
      --sync) sync="$2" && shift 2 ;;
      --sync-every) every="$2" && shift 2 ;;
      --env) export "${2?--env needs KEY=VALUE}" && shift 2 ;;
      --) shift && break ;;
      *) die "start: unknown option $1" ;;
    esac
  done
  (($#)) || die "start: no command after --"
  mkdir -p "$LOGS"
  if [[ "$(status "$run")" == running ]]; then
    echo "$run is already running (pid $(<"$LOGS/$run.pid")); not starting it again"
    return
  fi
  workdir="$(workdir_of "$@")"
  if [[ -n $sync ]]; then
    [[ -n $workdir ]] || die "--sync needs a command with --workdir"
    if gcloud storage ls "$sync" >/dev/null 2>&1; then
      echo "restoring $workdir from $sync"
      mkdir -p "$workdir"
      gcloud storage rsync -r "$sync" "$workdir"
    fi
  fi
  echo running >"$LOGS/$run.status"
  # Its own session: the ssh that started it can end; `kill -- -PID` ends the run with all its processes.
  setsid nohup bash "$0" _run "$run" "$sync" "$every" "$workdir" "$@" >"$LOGS/$run.log" 2>&1 </dev/null &
  echo $! >"$LOGS/$run.pid"
  echo "started $run on worker $(worker_id) (pid $!), log: $PWD/$LOGS/$run.log"
}

# The detached part of `start`: the command, the periodic copy to --sync, the exit status.
_run() {
  local run=$1 sync=$2 every=$3 workdir=$4 pusher="" code=0 sync_here=0
  shift 4
  if [[ -f .venv/bin/activate ]]; then
    # shellcheck disable=SC1091 # created by `install` on the worker
    source .venv/bin/activate
  fi
  export XLT_DISTRIBUTED_INITIALIZE=1
  if [[ -n $sync && "$(worker_id)" == 0 ]]; then sync_here=1; fi
  if ((sync_here)); then
    (while sleep "$every"; do push "$workdir" "$sync" || true; done) &
    pusher=$!
  fi
  echo "$(date -u +%FT%TZ) start: $*"
  "$@" || code=$?
  echo "$(date -u +%FT%TZ) exit $code"
  if [[ -n $pusher ]]; then kill "$pusher" 2>/dev/null || true; fi
  if ((sync_here)) && ! push "$workdir" "$sync"; then
    ((code)) || code=1 # finished, but the copy is not complete: not a success
  fi
  echo "exit $code" >"$LOGS/$run.status"
}

case "${1:-}" in
  install) shift && install "$@" ;;
  start)
    [[ $# -ge 2 ]] || die "start RUN [options] -- COMMAND..."
    shift && start "$@"
    ;;
  status)
    [[ $# -eq 2 ]] || die "status RUN"
    status "$2"
    ;;
  _run) shift && _run "$@" ;;
  -h | --help) echo "$USAGE" ;;
  *)
    echo "$USAGE" >&2
    exit 2
    ;;
esac
