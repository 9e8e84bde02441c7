#!/usr/bin/env bash
# Launch pretraining on all workers: tpu/launch.sh configs/pretrain/bilingual.py lang=en,transform=inv gs://b/run
set -euo pipefail
source "$(dirname "$0")/env.sh"
config="$1"; args="$2"; workdir="$3"; shift 3
on_all_workers "cd $REMOTE_DIR && XLT_DATA_DIR=$XLT_DATA_DIR nohup .venv/bin/python -m xlt_jax.train \
  --config '$config:$args' --workdir '$workdir' --config.distributed.initialize=true $* \
  > train.log 2>&1 &"
