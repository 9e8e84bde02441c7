#!/usr/bin/env bash
# Copy this checkout to every worker, install it with the TPU runtime and tfds, fill the data directory.
set -euo pipefail
source "$(dirname "$0")/env.sh"
root="$(cd "$(dirname "$0")/.." && pwd)"
tar -C "$root" --exclude=.venv --exclude=data --exclude=runs -czf /tmp/xlt_jax.tgz .
gcloud compute tpus tpu-vm scp /tmp/xlt_jax.tgz "$TPU_NAME":/tmp/xlt_jax.tgz --zone "$ZONE" --worker=all
on_all_workers "mkdir -p $REMOTE_DIR && tar -C $REMOTE_DIR -xzf /tmp/xlt_jax.tgz && cd $REMOTE_DIR && \
  python3 -m venv .venv && .venv/bin/pip install -q -U pip && \
  .venv/bin/pip install -q -e '.[tfds]' 'jax[tpu]' && \
  XLT_DATA_DIR=$XLT_DATA_DIR .venv/bin/python -m xlt_jax.data.download"
