#!/usr/bin/env bash
# Delete the TPU VM.
set -euo pipefail
source "$(dirname "$0")/env.sh"
gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone "$ZONE" --quiet
