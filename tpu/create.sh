#!/usr/bin/env bash
set -euo pipefail
# shellcheck source=tpu/lib.sh
source "$(dirname "$0")/lib.sh"
USAGE="Usage: tpu/create.sh [--spot] [--queued [--valid-until DURATION]] [--wait] [common options]
Create the TPU VM or pod slice NAME: on demand (default), as a spot VM (--spot: cheaper, can be preempted
at any time; tpu/watch.sh recreates it and resumes the run), or through a queued resource (--queued,
named NAME-qr: waits in line for capacity, optionally only for --valid-until, e.g. 6h; combines with --spot).
--wait polls until the VM is READY (queued: until the queued resource is ACTIVE)."

SPOT=0
QUEUED=0
VALID_UNTIL=""
WAIT=0
POLL="${POLL:-30}"
script_option() {
  case "$1" in
    --spot) SPOT=1 SHIFT=1 ;;
    --queued) QUEUED=1 SHIFT=1 ;;
    --valid-until) need_value "$@" && VALID_UNTIL="$2" SHIFT=2 ;;
    --wait) WAIT=1 SHIFT=1 ;;
    --poll) need_value "$@" && POLL="$2" SHIFT=2 ;;
  esac
}
parse_args "$@"
((${#ARGS[@]} == 0)) || die "unexpected arguments: ${ARGS[*]}"
[[ -z $VALID_UNTIL || $QUEUED == 1 ]] || die "--valid-until needs --queued"

extra=()
if ((SPOT)); then extra+=(--spot); fi
if ((QUEUED)); then
  if [[ -n $VALID_UNTIL ]]; then extra+=(--valid-until-duration "$VALID_UNTIL"); fi
  gc compute tpus queued-resources create "$TPU_NAME-qr" --node-id "$TPU_NAME" --zone "$ZONE" \
    --accelerator-type "$ACCELERATOR" --runtime-version "$RUNTIME" "${extra[@]}"
  describe=(compute tpus queued-resources describe "$TPU_NAME-qr" --zone "$ZONE" --format='value(state.state)')
  ready=ACTIVE
else
  gc compute tpus tpu-vm create "$TPU_NAME" --zone "$ZONE" --accelerator-type "$ACCELERATOR" \
    --version "$RUNTIME" "${extra[@]}"
  describe=(compute tpus tpu-vm describe "$TPU_NAME" --zone "$ZONE" --format='value(state)')
  ready=READY
fi

if ((WAIT)); then
  if ((DRY_RUN)); then
    echo "# --wait: repeat every ${POLL}s until it prints $ready:"
    gc "${describe[@]}"
    exit 0
  fi
  while true; do
    state="$(gc "${describe[@]}")" || state=UNKNOWN
    log "$TPU_NAME: $state"
    case "$state" in
      "$ready") break ;;
      FAILED | SUSPENDED | PREEMPTED | TERMINATED) die "$TPU_NAME: $state" ;;
    esac
    sleep "$POLL"
  done
fi
