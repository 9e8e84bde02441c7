"""Sharded pretraining: mesh and logical-axis rules (`partitioning`), AdamW schedule (`optimizer`), the train
state and its sharded creation (`state`), the jitted train/eval steps (`steps`), Orbax checkpoints with the
input-pipeline state (`checkpointing`), TensorBoard/console metrics (`writers`), multi-process start-up
(`distributed`), the run's text/tokenizer/pipeline (`inputs`) and the loop itself (`loop.run`)."""
