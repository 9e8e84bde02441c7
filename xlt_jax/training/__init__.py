"""Sharded pretraining: mesh and logical-axis rules (`partitioning`), AdamW schedule (`optimizer`), the train
state and its sharded creation (`state`), the jitted train/eval steps (`steps`), Orbax checkpoints with the
input-pipeline state (`checkpointing`, verified by `integrity` checksums), TensorBoard/console metrics
(`writers`, `metrics`), multi-process start-up (`distributed`), SIGTERM handling (`preemption`), the NaN/Inf
policy (`nonfinite`), the run's text/tokenizer/pipeline (`inputs`) and the loop itself (`loop.run`)."""
