r"""Fine-tuning and evaluation on the XTREME-style tasks (REFERENCE_SPEC §4–5), behind two binaries.

    python -m xlt_jax.finetune --config configs/finetune/pos.py:pretrained=runs/en_inv --workdir runs/en_inv/pos
    python -m xlt_jax.evaluate --config configs/evaluate.py:finetuned=runs/en_inv/pos,targets=en:inv,setting=BZ \
        --workdir runs/results

Modules, one concept each:
  pretrained    reading a pretraining run directory; restoring only its parameters (Orbax partial restore)
  task_model    backbone + task head with the trainer's `loss` interface and a `predict`
  text_to_text  T5 label words as decoder targets, generated ids back to labels
  vocab_resize  the explicit MZ rule for transliteration: new vocabulary rows, randomly initialised
  loading       sharded task-model parameters from any checkpoint (merging, resizing)
  trainer       the fine-tuning loop (`trainer.run(config, workdir)`)
  artifacts     the fine-tuned run directory (finetune.json, tokenizer, checkpoints)
  inference     a jitted predict step over all feature rows
  evaluation    targets, scoring and result rows (`evaluation.run(config, workdir)`)
"""
