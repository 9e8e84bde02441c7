r"""Multilingual pretraining: N natural languages mixed by temperature sampling, q_l ∝ p_l^alpha.

Arguments (`--config configs/pretrain/multilingual.py:langs=en+fr+hi+ar,alpha=0.3`):
  langs=en+fr+hi+ar  '+'-separated languages (one joint tokenizer, trained on the same α-mix)
  alpha=0.3          sampling temperature (XLM-R / mT5 use 0.3; 1.0 = natural proportions)
  objective=mlm      mlm (RoBERTa) | span (T5 v1.1 span corruption, mT5 style)
  model=             preset: roberta tiny|mini|small|roberta8 (default roberta8); t5 tiny|small|base (default small)
  smoke              tiny model, seq 64, 20 steps: an end-to-end run in well under a minute on a CPU
  steps, batch, seq, lr, vocab: override the recipe's train.steps, global batch, seq_len, peak lr, vocab size

  python -m xlt_jax.train --config configs/pretrain/multilingual.py:langs=en+fr+hi+ar --workdir runs/multi4
"""

import pathlib
import runpy

from xlt_jax.config_utils import parse_arg

common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg=None):
    a = parse_arg(arg, langs="en+fr+hi+ar", alpha=0.3, objective="mlm", model="", smoke=False,
                  steps=0, batch=0, seq=0, lr=0.0, vocab=0)
    config = common["pretrain_config"](
        mode="multilingual", langs=a.langs, transform="none", objective=a.objective, model=a.model,
        alpha=a.alpha, smoke=a.smoke, steps=a.steps, batch=a.batch, seq=a.seq, lr=a.lr, vocab=a.vocab,
    )
    config.tokenizer.alpha = a.alpha
    config.model.num_langs = len(a.langs.split("+"))
    return config
