#!/usr/bin/env bash
set -euo pipefail
# shellcheck source=tpu/lib.sh
source "$(dirname "$0")/lib.sh"
USAGE="Usage: tpu/watch.sh [--once] [--interval S] [--max-restarts N] [create options] [setup options]
                     [launch options] [common options] -- python -m xlt_jax.BINARY ARGS...
Keep a run going: every S seconds (default 600) check the VM and the run, and act.
  VM READY, run running                 nothing
  VM READY, run exited 0                done: exit 0
  VM READY, run dead, never started,
           or exited non-zero           relaunch it with tpu/launch.sh (resumes from the last checkpoint)
  VM PREEMPTED, TERMINATED or gone      tpu/delete.sh, tpu/create.sh --wait, tpu/setup.sh, tpu/launch.sh
  anything else (CREATING, ...)         wait
--once checks and acts once (a resume command; also for cron). After --max-restarts relaunches (default
3) it gives up. A new VM has empty disks: pass --sync gs://... (a launch option) so the relaunch restores
the workdir from Cloud Storage; without it the run starts over.
Create options: --spot, --queued, --valid-until D. Setup options: --extras, --python, --no-data.
Launch options: --run, --sync, --sync-every, --env (see tpu/launch.sh --help)."

ONCE=0
INTERVAL=600
MAX_RESTARTS=3
RUN=""
CREATE=()
SETUP=()
LAUNCH=()
QUEUED=()
script_option() {
  case "$1" in
    --once) ONCE=1 SHIFT=1 ;;
    --interval) need_value "$@" && INTERVAL="$2" SHIFT=2 ;;
    --max-restarts) need_value "$@" && MAX_RESTARTS="$2" SHIFT=2 ;;
    --spot) CREATE+=(--spot) SHIFT=1 ;;
    --queued) CREATE+=(--queued) QUEUED=(--queued) SHIFT=1 ;;
    --valid-until) need_value "$@" && CREATE+=("$1" "$2") SHIFT=2 ;;
    --extras | --python) need_value "$@" && SETUP+=("$1" "$2") SHIFT=2 ;;
    --no-data) SETUP+=(--no-data) SHIFT=1 ;;
    --run) need_value "$@" && RUN="$2" SHIFT=2 ;;
    --sync | --sync-every | --env) need_value "$@" && LAUNCH+=("$1" "$2") SHIFT=2 ;;
  esac
}
parse_args "$@"
((${#ARGS[@]} > 0)) || die "no command: tpu/watch.sh [options] -- python -m xlt_jax.train ... (see --help)"
[[ -n $RUN ]] || RUN="$(run_name_of "${ARGS[@]}")"
LAUNCH=(--run "$RUN" "${LAUNCH[@]}")

sibling() {
  local script=$1
  shift
  "$TPU_DIR/$script" "${COMMON_ARGS[@]}" "$@"
}
relaunch() { sibling launch.sh "${LAUNCH[@]}" -- "${ARGS[@]}"; }
recreate() {
  # A queued resource outlives its preempted node: delete it even when the node is gone.
  if [[ $1 != NOT_FOUND || ${#QUEUED[@]} -gt 0 ]]; then
    sibling delete.sh "${QUEUED[@]}" || log "delete failed; creating anyway"
  fi
  sibling create.sh "${CREATE[@]}" --wait
  sibling setup.sh "${SETUP[@]}"
  relaunch
}

if ((DRY_RUN)); then
  echo "# every ${INTERVAL}s: the VM's state, then (if READY) the run's status on worker 0:"
  gc compute tpus tpu-vm describe "$TPU_NAME" --zone "$ZONE" --format='value(state)'
  on_workers 0 "$(remote_cmd bash tpu/remote.sh status "$RUN")"
  echo "# READY and the run dead, never started or failed: relaunch"
  relaunch
  echo "# PREEMPTED, TERMINATED or gone: recreate, reinstall, relaunch"
  recreate PREEMPTED
  exit 0
fi

restarts=0
while true; do
  state="$(vm_state)"
  action=""
  case "$state" in
    READY)
      status="$(run_status "$RUN")"
      log "$TPU_NAME READY, $RUN: $status"
      case "$status" in
        running | unreachable) ;;
        "exit 0") log "$RUN finished" && exit 0 ;;
        *) action=relaunch ;;
      esac
      ;;
    PREEMPTED | TERMINATED | NOT_FOUND)
      log "$TPU_NAME $state: recreating it"
      action=recreate
      ;;
    *) log "$TPU_NAME $state: waiting" ;;
  esac
  if [[ -n $action ]]; then
    if ((restarts >= MAX_RESTARTS)); then
      die "$RUN: $restarts restarts already (--max-restarts); giving up"
    fi
    restarts=$((restarts + 1))
    if [[ $action == recreate ]]; then recreate "$state"; else relaunch; fi
  fi
  if ((ONCE)); then exit 0; fi
  sleep "$INTERVAL"
done
