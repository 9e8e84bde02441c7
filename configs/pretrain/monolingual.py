r"""Monolingual pretraining: one natural language, or one derived language alone (PM's `replace` mode).

Arguments (`--config configs/pretrain/monolingual.py:lang=en`):
  lang=en            the language
  transform=none     none = the natural language; inv, perm, translit, ... = only the derived language
  objective=mlm      mlm (RoBERTa) | span (T5 v1.1 span corruption)
  model=             preset: roberta tiny|mini|small|roberta8 (default roberta8); t5 tiny|small|base (default small)
  smoke              tiny model, seq 64, 20 steps: an end-to-end run in well under a minute on a CPU
  steps, batch, seq, lr, vocab: override the recipe's train.steps, global batch, seq_len, peak lr, vocab size
  trees=gold         syntax.trees: gold (syntax reorders the UD train trees' sentences) | udpipe | stanza (the
                     corpus is parsed, cached, and reordered; corpus.source then defaults to lang:{lang})

  python -m xlt_jax.train --config configs/pretrain/monolingual.py:lang=fr --workdir runs/fr
"""

import pathlib
import runpy

from xlt_jax.config_utils import parse_arg

common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg=None):
    a = parse_arg(arg, lang="en", transform="none", objective="mlm", model="", smoke=False,
                  steps=0, batch=0, seq=0, lr=0.0, vocab=0, trees="gold")
    config = common["pretrain_config"](
        mode="monolingual", langs=a.lang, transform=a.transform, objective=a.objective, model=a.model,
        smoke=a.smoke, steps=a.steps, batch=a.batch, seq=a.seq, lr=a.lr, vocab=a.vocab, trees=a.trees,
    )
    config.model.num_langs = 1
    return config
