r"""Fine-tune on NER from a pretraining run (recipe: REFERENCE_SPEC §4.2, see common.py RECIPES).

Arguments (`--config configs/finetune/ner.py:pretrained=runs/en_inv,lang=en`):
  pretrained=PATH    pretraining WORKDIR (required)
  lang=en            language of the fine-tuning data
  train_transform=   none (default: original data, for BZ / MZ) | inv | perm | translit | translit+inv | ... (BS)
  source=            data source ("" = the task's default, xlt_jax/data/tasks/sources.py)
  head=auto          auto | encoder | text (T5 text to text: nli label words and qa answers only)
  smoke              256 examples, seq 64, 20 steps: an end-to-end run in well under a minute on a CPU
  max_len=512        longest row in pieces: 512 as in the paper's code; max_len=128 = the paper's appendix
  epochs, batch, lr, steps, examples, seed: override the recipe

  python -m xlt_jax.finetune --config configs/finetune/ner.py:pretrained=runs/en_inv --workdir runs/en_inv/ner
"""

import pathlib
import runpy

from xlt_jax.config_utils import parse_arg

common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg=None):
    a = parse_arg(arg, pretrained="", lang="en", train_transform="none", source="", head="auto", smoke=False,
                  epochs=0, batch=0, lr=0.0, max_len=0, steps=0, examples=0, seed=42)
    return common["finetune_config"]("ner", **a.to_dict())
