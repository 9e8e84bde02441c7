r"""Bilingual pretraining: a language plus a derived one (the paper's setup), or two natural languages.

Arguments (`--config configs/pretrain/bilingual.py:lang=en,transform=inv`):
  lang=en            the natural language
  transform=inv      derived language: inv | perm | translit | translit+inv | inv@word | ... (none with lang2)
  lang2=             a second natural language instead of a derived one (e.g. lang2=fr, transform=none)
  objective=mlm      mlm (RoBERTa) | span (T5 v1.1 span corruption)
  model=             preset: roberta tiny|mini|small|roberta8 (default roberta8); t5 tiny|small|base (default small)
  smoke              tiny model, seq 64, 20 steps: an end-to-end run in well under a minute on a CPU
  steps, batch, seq, lr, vocab: override the recipe's train.steps, global batch, seq_len, peak lr, vocab size
  trees=gold         syntax.trees: gold (syntax reorders the UD train trees' sentences) | udpipe | stanza (the
                     corpus is parsed, cached, and reordered; corpus.source then defaults to lang:{lang})

The paper's runs (REFERENCE_SPEC §3.2), e.g. English + inverted English:
  python -m xlt_jax.train --config configs/pretrain/bilingual.py:lang=en,transform=inv --workdir runs/en_inv
"""

import pathlib
import runpy

from xlt_jax.config_utils import parse_arg

common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg=None):
    a = parse_arg(arg, lang="en", transform="", lang2="", objective="mlm", model="", smoke=False,
                  steps=0, batch=0, seq=0, lr=0.0, vocab=0, trees="gold")
    langs = f"{a.lang}+{a.lang2}" if a.lang2 else a.lang
    transform = a.transform or ("none" if a.lang2 else "inv")
    return common["pretrain_config"](
        mode="bilingual", langs=langs, transform=transform, objective=a.objective, model=a.model, smoke=a.smoke,
        steps=a.steps, batch=a.batch, seq=a.seq, lr=a.lr, vocab=a.vocab, trees=a.trees,
    )
