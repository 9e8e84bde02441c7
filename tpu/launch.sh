#!/usr/bin/env bash
set -euo pipefail
# shellcheck source=tpu/lib.sh
source "$(dirname "$0")/lib.sh"
USAGE="Usage: tpu/launch.sh [--run NAME] [--sync gs://BUCKET/PATH [--sync-every S]] [--env KEY=VALUE]...
                      [--wait [--poll S]] [common options] -- python -m xlt_jax.BINARY ARGS...
Start a command on every worker at once (--worker=all), detached, through tpu/remote.sh start: the
workers' .venv is active and XLT_DISTRIBUTED_INITIALIZE=1 makes each binary call jax.distributed.initialize(),
which finds the slice's other hosts by itself. Any binary works: xlt_jax.train, finetune, evaluate,
experiments.protocol, experiments.grid. Output goes to REMOTE_DIR/logs/NAME.log on each worker (NAME:
--run, default the last component of the command's --workdir); stream it with tpu/logs.sh.
Relative paths (configs/..., --workdir runs/...) are relative to the checkout on the workers.
Rerunning the same launch resumes from the workdir's last checkpoint; a run already running is left alone.
--workdir gs://BUCKET/PATH: the binaries write the workdir in Cloud Storage themselves (every host, so
multi-host slices need no shared filesystem), and a new VM resumes from it: no --sync needed.
--sync copies a local workdir to Cloud Storage every S seconds (default 600) and at the end, and restores it
from there before starting: the other way to resume on a new VM after a spot preemption (tpu/watch.sh).
--env passes environment variables (e.g. TFDS_DATA_DIR=...). --wait returns when the run has ended:
status 0 if it exited 0."

RUN=""
SYNC=""
SYNC_EVERY=""
ENVS=()
WAIT=0
POLL="${POLL:-60}"
script_option() {
  case "$1" in
    --run) need_value "$@" && RUN="$2" SHIFT=2 ;;
    --sync) need_value "$@" && SYNC="$2" SHIFT=2 ;;
    --sync-every) need_value "$@" && SYNC_EVERY="$2" SHIFT=2 ;;
    --env) need_value "$@" && ENVS+=(--env "$2") SHIFT=2 ;;
    --wait) WAIT=1 SHIFT=1 ;;
    --poll) need_value "$@" && POLL="$2" SHIFT=2 ;;
  esac
}
parse_args "$@"
((${#ARGS[@]} > 0)) || die "no command: tpu/launch.sh [options] -- python -m xlt_jax.train ... (see --help)"
[[ -n $RUN ]] || RUN="$(run_name_of "${ARGS[@]}")"
[[ -z $SYNC || $SYNC == gs://* ]] || die "--sync takes a gs:// URL, got $SYNC"
[[ -z $SYNC || -n "$(workdir_of "${ARGS[@]}")" ]] || die "--sync needs a command with --workdir"
case "$(workdir_of "${ARGS[@]}")" in
  gs://*) [[ -z $SYNC ]] || die "--sync copies a local workdir; --workdir $(workdir_of "${ARGS[@]}") is already in Cloud Storage" ;;
esac

start=(bash tpu/remote.sh start "$RUN")
if [[ -n $SYNC ]]; then start+=(--sync "$SYNC"); fi
if [[ -n $SYNC_EVERY ]]; then start+=(--sync-every "$SYNC_EVERY"); fi
start+=("${ENVS[@]}" -- "${ARGS[@]}")
on_workers all "$(remote_cmd "${start[@]}")"

if ((WAIT)); then
  if ((DRY_RUN)); then
    echo "# --wait: repeat every ${POLL}s while it prints 'running':"
    on_workers 0 "$(remote_cmd bash tpu/remote.sh status "$RUN")"
    exit 0
  fi
  while true; do
    sleep "$POLL"
    status="$(run_status "$RUN")"
    case "$status" in
      running | unreachable) continue ;;
      "exit 0") log "$RUN finished" && exit 0 ;;
      *) log "$RUN ended: $status (tpu/logs.sh --run $RUN)" && exit 1 ;;
    esac
  done
fi
