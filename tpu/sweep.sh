#!/usr/bin/env bash
# The paper's bilingual grid: every language with every derived-language transformation, run in sequence.
# WORKROOT=gs://bucket/xlt tpu/sweep.sh
set -euo pipefail
source "$(dirname "$0")/env.sh"
: "${WORKROOT:?set WORKROOT, e.g. gs://bucket/xlt}"
: "${LANGS:=en fr hi ar}"
: "${TRANSFORMS:=inv perm translit translit+inv translit+perm syntax:hi}"
for lang in $LANGS; do
  for t in $TRANSFORMS; do
    run="$WORKROOT/bilingual/${lang}_${t//[:+]/_}"
    "$(dirname "$0")/launch.sh" configs/pretrain/bilingual.py "lang=$lang,transform=$t,model=roberta8" "$run"
    # One run at a time on one slice: wait for the workers to finish.
    on_all_workers "while pgrep -f xlt_jax.train >/dev/null; do sleep 60; done"
  done
done
