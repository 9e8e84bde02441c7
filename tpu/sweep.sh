#!/usr/bin/env bash
set -euo pipefail
# shellcheck source=tpu/lib.sh
source "$(dirname "$0")/lib.sh"
USAGE="Usage: tpu/sweep.sh [--langs 'en fr'] [--transforms 'inv perm ...'] [--root DIR] [--args K=V,...]
                     [--sync-root gs://...] [common options]
The paper's grid one cell at a time on one slice: for each language and transformation, the BZ/BS/MZ
protocol (python -m xlt_jax.experiments.protocol --config configs/experiments/deshpande.py:lang=L,
transform=T,ARGS --workdir ROOT/L_T), launched on all workers with tpu/launch.sh --wait. Finished cells
are skipped by the protocol itself (DONE.json), so rerunning the sweep resumes it. --args default:
model=roberta8 (the paper's defaults otherwise: seq 512, batch 128, 500k steps). ROOT may be a gs:// URL
(the binaries write the workdirs there; no --sync-root then)."

LANGS="en fr hi ar"
TRANSFORMS="inv perm translit translit+inv translit+perm syntax:hi"
ROOT=runs/protocol
EXTRA=model=roberta8
SYNC_ROOT=""
script_option() {
  case "$1" in
    --langs) need_value "$@" && LANGS="$2" SHIFT=2 ;;
    --transforms) need_value "$@" && TRANSFORMS="$2" SHIFT=2 ;;
    --root) need_value "$@" && ROOT="$2" SHIFT=2 ;;
    --args) need_value "$@" && EXTRA="$2" SHIFT=2 ;;
    --sync-root) need_value "$@" && SYNC_ROOT="$2" SHIFT=2 ;;
  esac
}
parse_args "$@"
((${#ARGS[@]} == 0)) || die "unexpected arguments: ${ARGS[*]}"

read -r -a langs <<<"$LANGS"
read -r -a transforms <<<"$TRANSFORMS"
for lang in "${langs[@]}"; do
  for t in "${transforms[@]}"; do
    cell="${lang}_${t//[:+]/_}"
    sync=()
    if [[ -n $SYNC_ROOT ]]; then sync=(--sync "${SYNC_ROOT%/}/$cell"); fi
    "$TPU_DIR/launch.sh" "${COMMON_ARGS[@]}" --wait "${sync[@]}" -- python -m xlt_jax.experiments.protocol \
      --config "configs/experiments/deshpande.py:lang=$lang,transform=$t${EXTRA:+,$EXTRA}" --workdir "$ROOT/$cell"
  done
done
