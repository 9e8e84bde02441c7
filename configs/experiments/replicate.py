r"""The CPU-scale replication of the paper's English findings: a grid (`configs/experiments/paper.py`) of BZ / BS /
MZ protocol cells sized so that the effects show on a 2-core machine (README: "Replicating the paper on this CPU").

  make replicate      # python -m xlt_jax.experiments.grid --config configs/experiments/replicate.py \
                      #     --workdir runs/replicate   (resumable: rerunning continues)
  make demo           # python -m xlt_jax.demo: this config with `demo` (one cell, POS, one seed)

Default grid: English through translit, inv, translit+inv, perm, translit+perm, syntax (French order) and
translit+syntax (in that order), on POS and NER, fine-tuning seeds 1 and 2, alignment rows for every
transliteration model. Every model pretrains on the same text (the UD EWT train trees' sentences, below), so the
monolingual twin (and its MZ fine-tunes) is the same in every cell and runs once (`share_identical_runs`).

What differs from the paper's recipe (roberta8, seq 512, batch 128, 500k steps, lr 1e-4), and why:
  model mini (2 layers x 128, FFN 512), V = 2,000 pieces (4,000 rows with transliteration), seq 64, batch 128:
      tens of thousands of tokens/s here instead of ~300 for roberta8.
  lr 2e-3, warmup 200, schedule wsd (constant, linear decay over the last 15%): the model leaves the MLM
      plateau after ~13 M tokens (~1,600 steps) only at a high rate; the reference's linear decay over a short
      run lowers the rate before that point and the model never leaves it (README: fidelity).
  pretraining dropout 0 (the paper: 0.1): with dropout 0.1 when the model leaves the plateau is a matter of the
      dropout draws (README: fidelity; Hugging Face's model left at ~2,000 steps, xlt_jax's not by 2,500 on the
      same batches, an earlier xlt_jax run at ~1,600); without dropout both leave together at ~1,600-1,800. A model this
      small, seeing ~20 M tokens, under-fits: dropout only delays it. Fine-tuning keeps dropout 0.1.
  AdamW b2 0.98, eps 1e-6, weight decay 0.01 (RoBERTa's pretraining values); MLM random replacements from the
      sequence's own language.
  fine-tuning lr 3e-4, 2 epochs, max_len 64 (the model's position table): the paper's 2e-5 under-fits a model
      this small; NER on 4,000 of its 20,000 training sentences. Batches grouped by length (Hugging Face's
      group_by_length; the reference's are random): the same epochs in about half the positions.
  the monolingual twin pretrains 1,000 steps (500 in the demo): it is the "no transfer" baseline (MZ on a
      derived language) and the orig→orig reference, not a model whose quality the findings depend on.
  corpus treebank (the UD EWT train trees' 11,634 sentences, 325k pieces), not the 50,511-sentence `lang:en`
      sample: 2,400 steps then make ~29 passes over the corpus instead of ~6 (the paper's 500k x 128 x 512 tokens
      make ~160 over its 2 x ~100M). On `lang:en` transliteration barely transferred (POS Δ(BZ−BS) −51.5, token
      alignment 0.8%); on the treebank the same cell gives −18.7 and 14.5% (README: the corpus control). Every
      cell, syntax included (which needs the gold trees), now pretrains on the same text, and one monolingual
      twin serves them all.
Arguments: transforms=, tasks=, seeds=, demo; steps (bilingual pretraining), mono_steps, ft_lr, ft_epochs;
  corpus=SOURCE pretrains every model on `SOURCE:{lang}` (default treebank; `corpus=lang` is the language's
  pretraining sample, the recipe of the README's previous full run).
Scaling to the paper (roberta8, seq 512, batch 128, 500k steps on a TPU v3-8) changes sizes only:
  python -m xlt_jax.experiments.grid --config configs/experiments/paper.py:langs=en,tasks=pos+ner,model=roberta8 \
      --workdir gs://BUCKET/paper_en      (README: Running on Cloud TPU)
"""

import pathlib
import runpy

from xlt_jax.config_utils import parse_arg

PAPER = pathlib.Path(__file__).with_name("paper.py")
# Cells run in this order: each composition right after its constituents, so a partial run (stopped and
# resumed later) already decides finding (b) for the compositions it reached.
TRANSFORMS = "translit/inv/translit+inv/perm/translit+perm/syntax/translit+syntax"
RECIPE = dict(model="mini", vocab=2000, seq=64, batch=128, lr=2e-3, steps=2400, ft_lr=3e-4, ft_epochs=2, ft_max_len=64)
MONO_STEPS = 1000  # the twin only needs English: MZ on a derived language is "no transfer" whatever its quality
DEMO_MONO_STEPS = 500  # `make demo` keeps to ~15 minutes; its summary shows MZ on the derived language only
CORPUS = "treebank"  # the pretraining text of every model: see the module docstring
NER_EXAMPLES = 4000  # NER fine-tuning sentences (of 20,000): enough to learn the task, a fifth of the time


def get_config(arg=None):
    a = parse_arg(arg, transforms="", tasks="", seeds="", demo=False, steps=0, mono_steps=0, ft_lr=0.0, ft_epochs=0,
                  corpus=CORPUS)
    r = dict(RECIPE, steps=a.steps or RECIPE["steps"], ft_lr=a.ft_lr or RECIPE["ft_lr"],
             ft_epochs=a.ft_epochs or RECIPE["ft_epochs"])
    transforms = a.transforms or ("translit" if a.demo else TRANSFORMS)
    tasks = a.tasks or ("pos" if a.demo else "pos+ner")
    seeds = a.seeds or ("1" if a.demo else "1+2")
    args = ",".join(f"{k}={v}" for k, v in r.items())
    args += f",langs=en,transforms={transforms},variants=parallel,tasks={tasks},seeds={seeds},align=true,share=true"
    c = runpy.run_path(str(PAPER))["get_config"](args)
    p = c.protocol
    p.pretrain.share_tokenizer = False  # each twin trains its own (identical) tokenizer: shareable across cells
    for pre in (p.pretrain.bilingual, p.pretrain.monolingual):
        pre.model.dtype = "float32"  # this CPU has no bf16 units (ENV_NOTES §7)
        pre.model.dropout = 0.0  # see the module docstring: the plateau exit, deterministic without dropout
        pre.model.max_len = r["seq"]
        pre.optimizer.update(warmup_steps=200, schedule="wsd", decay_fraction=0.15, b2=0.98, eps=1e-6,
                             weight_decay=0.01)
        pre.data.random_replacement = "same_language"
        # 16 sequences share one budget of projected rows: 208 per 16 x 64 tokens instead of 16 x 24 = 384, the
        # same predictions (mlm.py), fewer rows projected. Not part of the steps' fingerprints (markers.py).
        pre.data.mlm_group_size = 16
        # Two layers: unrolled, the step is 5-9% faster than scanned here (A/B in one process: 202 vs 212 ms,
        # 204 vs 224 ms; README: Performance).
        pre.model.scan_layers = False
        pre.train.update(log_every=100, eval_every=500, eval_max_batches=8, checkpoint_every=500)
        pre.corpus.source = f"{a.corpus}:{{lang}}"
    p.pretrain.monolingual.train.steps = a.mono_steps or (DEMO_MONO_STEPS if a.demo else MONO_STEPS)
    for task in ("pos", "ner", "nli", "qa"):
        p.finetune[task].model.dtype = "float32"
        p.finetune[task].model.dropout = 0.1  # the reference's fine-tuning dropout (not the pretraining's 0)
        # Batches of similar lengths, cropped to multiples of 16 positions: random batches of UD sentences
        # (27 pieces on average) are almost always padded to 64; grouped, to ~35 (README: fine-tuning speed).
        p.finetune[task].group_by_length = 50
        p.finetune[task].bucket = 16
    p.finetune.ner.max_train_examples = NER_EXAMPLES
    return c
