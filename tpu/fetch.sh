#!/usr/bin/env bash
set -euo pipefail
# shellcheck source=tpu/lib.sh
source "$(dirname "$0")/lib.sh"
USAGE="Usage: tpu/fetch.sh [--checkpoints] [common options] WORKDIR [DEST]
Copy a run's outputs to DEST (default runs/<last component of WORKDIR>): results.jsonl, reports, event
files, config, tokenizer; checkpoints only with --checkpoints. WORKDIR is either the --workdir given to
tpu/launch.sh (a path on the workers: packed on worker 0, copied with gcloud compute tpus tpu-vm scp) or
the gs:// URL given to --sync (copied with gcloud storage rsync; works after the VM is gone)."

CHECKPOINTS=0
script_option() {
  case "$1" in
    --checkpoints) CHECKPOINTS=1 SHIFT=1 ;;
  esac
}
parse_args "$@"
((${#ARGS[@]} >= 1 && ${#ARGS[@]} <= 2)) || die "expected WORKDIR [DEST] (see --help)"
workdir="${ARGS[0]%/}"
dest="${ARGS[1]:-runs/${workdir##*/}}"

run mkdir -p "$dest"
if [[ $workdir == gs://* ]]; then
  exclude=()
  if ((!CHECKPOINTS)); then exclude=(--exclude='(^|.*/)checkpoints/.*'); fi
  gc storage rsync -r "${exclude[@]}" "$workdir" "$dest"
else
  archive="/tmp/xlt-fetch-${workdir##*/}.tgz"
  pack=(tar -C "$workdir")
  if ((!CHECKPOINTS)); then pack+=(--exclude=checkpoints); fi
  pack+=(-czf "$archive" .)
  on_workers 0 "$(remote_cmd "${pack[@]}")"
  gc compute tpus tpu-vm scp "$TPU_NAME:$archive" "$dest/.fetch.tgz" --zone "$ZONE" --worker=0
  run tar -xzf "$dest/.fetch.tgz" -C "$dest"
  run rm -f "$dest/.fetch.tgz"
fi
