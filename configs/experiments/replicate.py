r"""The CPU-scale replication recipe: one BZ / BS / MZ protocol cell (`configs/experiments/deshpande.py`) sized so
that the paper's effects show on a 2-core machine (README: "Replicating the paper on this CPU").

  python -m xlt_jax.experiments.protocol --config configs/experiments/replicate.py:transform=translit \
      --workdir runs/replicate/en_translit
  python -m xlt_jax.demo                  # = this config with `demo`, plus alignment and the printed summary

What differs from the paper's recipe (roberta8, seq 512, batch 128, 500k steps, lr 1e-4), and why:
  model mini (2 layers x 128, FFN 512), V = 2,000 pieces (4,000 rows with transliteration), seq 64: ~25-40k
      tokens/s here instead of ~300.
  lr 2e-3, warmup 200, schedule wsd (constant, linear decay over the last 20%): the model leaves the MLM
      plateau after ~13 M tokens (~1,600 steps) at a high rate; the reference's linear decay over a short run
      lowers the rate before that point and the model never leaves it (README: fidelity).
  AdamW b2 0.98, eps 1e-6, weight decay 0.01 (RoBERTa's pretraining values), random MLM replacements from the
      sequence's own language.
  fine-tuning lr 3e-4, 2 epochs, max_len 64 (the model's position table): the paper's 2e-5 under-fits a
      model this small.
Arguments: lang=en transform=translit tasks=pos+ner seeds=1+2; demo (tasks=pos, seeds=1); steps, mono_steps,
ft_lr, ft_epochs override the recipe; bilingual=PATH / monolingual=PATH reuse finished runs (the monolingual
twin of one language is shared by every transformation of that language).
Scaling to the paper (roberta8, seq 512, batch 128, 500k steps on a TPU v3-8) changes sizes only:
  configs/experiments/deshpande.py:lang=en,transform=translit,model=roberta8  (the reference recipe).
"""

import pathlib
import runpy

from xlt_jax.config_utils import parse_arg

EXPERIMENTS = pathlib.Path(__file__).resolve().parent
RECIPE = dict(model="mini", vocab=2000, seq=64, batch=128, lr=2e-3, steps=2000, ft_lr=3e-4, ft_epochs=2, ft_max_len=64)


def get_config(arg=None):
    a = parse_arg(arg, lang="en", transform="translit", tasks="", seeds="", demo=False, steps=0, mono_steps=0,
                  ft_lr=0.0, ft_epochs=0, bilingual="", monolingual="", corpus="")
    tasks = a.tasks or ("pos" if a.demo else "pos+ner")
    seeds = a.seeds or ("1" if a.demo else "1+2")
    r = dict(RECIPE, steps=a.steps or RECIPE["steps"], ft_lr=a.ft_lr or RECIPE["ft_lr"],
             ft_epochs=a.ft_epochs or RECIPE["ft_epochs"])
    args = ",".join(f"{k}={v}" for k, v in r.items())
    args += f",lang={a.lang},transform={a.transform},tasks={tasks},seeds={seeds},crosslingual=false"
    args += "".join(f",{k}={v}" for k, v in (("bilingual", a.bilingual), ("monolingual", a.monolingual),
                                               ("corpus", a.corpus)) if v)
    c = runpy.run_path(str(EXPERIMENTS / "deshpande.py"))["get_config"](args)
    for name, pre in (("bilingual", c.pretrain.bilingual), ("monolingual", c.pretrain.monolingual)):
        pre.model.dtype = "float32"  # this CPU has no bf16 units (ENV_NOTES §7)
        pre.model.max_len = r["seq"]
        pre.optimizer.update(warmup_steps=200, schedule="wsd", decay_fraction=0.2, b2=0.98, eps=1e-6,
                             weight_decay=0.01)
        pre.data.random_replacement = "same_language"
        pre.train.update(log_every=100, eval_every=500, eval_max_batches=8, checkpoint_every=500)
        if name == "monolingual" and a.mono_steps:
            pre.train.steps = a.mono_steps
    for task in ("pos", "ner", "nli", "qa"):
        c.finetune[task].model.dtype = "float32"
    return c
