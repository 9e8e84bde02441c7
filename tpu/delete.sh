#!/usr/bin/env bash
set -euo pipefail
# shellcheck source=tpu/lib.sh
source "$(dirname "$0")/lib.sh"
USAGE="Usage: tpu/delete.sh [--queued] [common options]
Delete the TPU VM NAME (its disks and whatever a run left there: fetch results first), or with --queued
the queued resource NAME-qr together with its node."

QUEUED=0
script_option() {
  case "$1" in
    --queued) QUEUED=1 SHIFT=1 ;;
  esac
}
parse_args "$@"
((${#ARGS[@]} == 0)) || die "unexpected arguments: ${ARGS[*]}"

if ((QUEUED)); then
  gc compute tpus queued-resources delete "$TPU_NAME-qr" --zone "$ZONE" --force --quiet
else
  gc compute tpus tpu-vm delete "$TPU_NAME" --zone "$ZONE" --quiet
fi
