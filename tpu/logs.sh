#!/usr/bin/env bash
set -euo pipefail
# shellcheck source=tpu/lib.sh
source "$(dirname "$0")/lib.sh"
USAGE="Usage: tpu/logs.sh --run NAME [--worker N|all] [--lines N] [--no-follow] [common options]
Stream a run's log (REMOTE_DIR/logs/NAME.log, written by tpu/launch.sh) from worker N (default 0:
the process that writes metrics and checkpoints; all: every worker, interleaved). Ctrl-C stops
streaming, not the run."

RUN=""
WORKER=0
LINES=100
FOLLOW=1
script_option() {
  case "$1" in
    --run) need_value "$@" && RUN="$2" SHIFT=2 ;;
    --worker) need_value "$@" && WORKER="$2" SHIFT=2 ;;
    --lines) need_value "$@" && LINES="$2" SHIFT=2 ;;
    --no-follow) FOLLOW=0 SHIFT=1 ;;
  esac
}
parse_args "$@"
((${#ARGS[@]} == 0)) || die "unexpected arguments: ${ARGS[*]}"
[[ -n $RUN ]] || die "--run NAME is required (the workdir's last component, or launch.sh's --run)"

tail=(tail -n "$LINES")
if ((FOLLOW)); then tail+=(-F); fi
on_workers "$WORKER" "$(remote_cmd "${tail[@]}" "logs/$RUN.log")"
