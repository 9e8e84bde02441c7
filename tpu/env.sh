# Shared settings of the TPU scripts; override any of them in the environment.
: "${TPU_NAME:=xlt-jax}"
: "${ZONE:=us-central2-b}"
: "${ACCELERATOR:=v4-8}"
: "${RUNTIME:=tpu-ubuntu2204-base}"
: "${REMOTE_DIR:=xlt_jax}"
: "${XLT_DATA_DIR:=\$HOME/xlt_data}"
export TPU_NAME ZONE ACCELERATOR RUNTIME REMOTE_DIR XLT_DATA_DIR

# Run a command on every worker of the VM.
on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$1"
}
