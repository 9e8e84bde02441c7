#!/usr/bin/env bash
set -euo pipefail
# shellcheck source=tpu/lib.sh
source "$(dirname "$0")/lib.sh"
USAGE="Usage: tpu/setup.sh [--extras EXTRAS] [--python PY] [--no-data] [common options]
Copy this checkout (without .git, .venv, data, runs) to every worker (--worker=all) and run
tpu/remote.sh install there: a .venv with PY (default python3.11), pip install -e '.[EXTRAS]' (default
tfds,tpu: TFDS sources and libtpu), and the data directory (\$HOME/xlt_data) filled by
python -m xlt_jax.data.download, unless --no-data. Rerun it after changing the code."

EXTRAS=tfds,tpu
PYTHON=python3.11
NO_DATA=0
script_option() {
  case "$1" in
    --extras) need_value "$@" && EXTRAS="$2" SHIFT=2 ;;
    --python) need_value "$@" && PYTHON="$2" SHIFT=2 ;;
    --no-data) NO_DATA=1 SHIFT=1 ;;
  esac
}
parse_args "$@"
((${#ARGS[@]} == 0)) || die "unexpected arguments: ${ARGS[*]}"

tarball="${TMPDIR:-/tmp}/xlt_jax-$TPU_NAME.tgz"
run tar -C "$REPO_ROOT" --exclude=./.git --exclude=./.venv --exclude=./data --exclude=./runs --exclude=./logs \
  --exclude=__pycache__ \
  -czf "$tarball" .
gc compute tpus tpu-vm scp "$tarball" "$TPU_NAME:/tmp/xlt_jax.tgz" --zone "$ZONE" --worker=all
install=(bash "$REMOTE_DIR/tpu/remote.sh" install --extras "$EXTRAS" --python "$PYTHON")
if ((NO_DATA)); then install+=(--no-data); fi
on_workers all "mkdir -p $(quote_word "$REMOTE_DIR") && tar -C $(quote_word "$REMOTE_DIR") -xzf /tmp/xlt_jax.tgz \
&& $(quote_cmd "${install[@]}")"
if ((!DRY_RUN)); then rm -f "$tarball"; fi
