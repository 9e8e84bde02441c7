#!/usr/bin/env bash
# Copy a run's outputs (results, event files, config, tokenizer; not checkpoints) from worker 0.
set -euo pipefail
source "$(dirname "$0")/env.sh"
workdir="$1"; dest="${2:-runs/$(basename "$workdir")}"
mkdir -p "$dest"
if [[ "$workdir" == gs://* ]]; then
  gsutil -m rsync -r -x 'checkpoints/.*' "$workdir" "$dest"
else
  gcloud compute tpus tpu-vm scp --recurse "$TPU_NAME:$REMOTE_DIR/$workdir/*" "$dest" --zone "$ZONE" --worker=0
fi
