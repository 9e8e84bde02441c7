r"""The paper's whole grid (Deshpande et al. 2022): languages × transformations × corpus variants, each cell one
BZ / BS / MZ protocol (configs/experiments/deshpande.py) over the tasks and seeds.

  python -m xlt_jax.experiments.grid --config configs/experiments/paper.py[:ARGS] --workdir DIR [--dry_run]

With no arguments: en, fr, hi, ar × inv, perm, syntax, translit, translit+inv, translit+perm, translit+syntax
(syntax in the paper's directions: English takes French order, French, Hindi and Arabic take English order)
× parallel corpora, plus the two non-parallel corpus variants of translit (Table 8), on XNLI, NER, POS,
XQuAD and Tatoeba, fine-tuning seed 42, with the alignment rows of every transliteration model (Table 7).

Arguments:
  langs=en+fr+hi+ar        '+'-joined natural languages
  transforms=inv/perm/syntax/translit/translit+inv/translit+perm/translit+syntax
                           '/'-separated transform specs; a bare `syntax` part takes each language's
                           `syntax_target` (the paper's direction); `syntax:hi` is used as given
  variants=parallel+nonparallel_same+nonparallel_diff
  variant_transforms=translit  '/'-separated transforms that also get the non-parallel variants (the others
                           run on parallel corpora only)
  tasks=nli+ner+pos+qa+tatoeba, seeds=42
  align=true               alignment rows of transliteration models (step align/bilingual of each cell)
  smoke, model, steps, batch, seq, lr, vocab, ft_epochs, ft_steps, ft_examples, ft_lr, ft_batch, ft_max_len,
  eval_examples, crosslingual (default false here), xl_langs, trees: passed to every cell's protocol config
                           (trees=udpipe|stanza: syntax cells parse their text, so NER, NLI and Tatoeba get
                           syntax rows too; a language that cannot be parsed here, hi and ar, is listed as
                           CANNOT RUN with the reason)

Every knob of the cells is visible in `protocol` (a cell's config as deshpande.py builds it); an override
such as `--config.protocol.finetune.pos.train.epochs=3` applies to every cell (the grid sets `lang`,
`transform`, `corpus`, `tasks` and `seeds` of each cell itself). `cost` sizes the dry run's estimate.
"""

import pathlib
import runpy

import ml_collections

from xlt_jax.config_utils import parse_arg

DESHPANDE = pathlib.Path(__file__).with_name("deshpande.py")
PAPER_TRANSFORMS = "inv/perm/syntax/translit/translit+inv/translit+perm/translit+syntax"
PASSED = ("smoke", "model", "steps", "batch", "seq", "lr", "vocab", "ft_epochs", "ft_steps", "ft_examples", "ft_lr",
          "ft_batch", "ft_max_len", "eval_examples", "crosslingual", "xl_langs", "align", "trees")


def get_config(arg=None):
    a = parse_arg(arg, langs="en+fr+hi+ar", transforms=PAPER_TRANSFORMS,
                  variants="parallel+nonparallel_same+nonparallel_diff", variant_transforms="translit",
                  tasks="nli+ner+pos+qa+tatoeba", seeds="42", align=True, smoke=False, model="", steps=0, batch=0,
                  seq=0, lr=0.0, vocab=0, ft_epochs=0, ft_steps=0, ft_examples=0, ft_lr=0.0, ft_batch=0,
                  ft_max_len=0, eval_examples=0, crosslingual=False, xl_langs="", share=False, trees="gold")
    c = ml_collections.ConfigDict()
    c.langs = a.langs  # '+'-joined natural languages
    c.transforms = a.transforms  # '/'-separated transform specs (a bare `syntax` part: syntax_target)
    c.syntax_target = ml_collections.ConfigDict(dict(en="fr", fr="en", hi="en", ar="en"))  # the paper's directions
    c.variants = a.variants  # '+'-joined corpus variants
    c.variant_transforms = a.variant_transforms  # '/'-separated: transforms that get the non-parallel variants
    c.tasks = a.tasks
    c.seeds = a.seeds
    # Run identical pretraining / fine-tuning runs once (a language's monolingual twin and its MZ fine-tunes are
    # the same in every cell of that language when the twins train their own, identical, tokenizer).
    c.share_identical_runs = a.share
    # Each cell's config: deshpande.py with lang, transform, corpus, tasks, seeds and these arguments.
    c.protocol_args = ",".join(_passed(a))
    c.protocol = runpy.run_path(str(DESHPANDE))["get_config"](c.protocol_args)  # template; overrides apply to all
    c.cost = ml_collections.ConfigDict(dict(
        measure=True,  # time one jitted train step of each distinct pretraining model not in the cache
        probe_batch=1,  # sequences in the timed step (FLOP/s scale to the real batch by analytic FLOPs)
        cache="auto",  # measured FLOP/s: auto = $XLT_CACHE_DIR/step_times.json (~/.cache/xlt_jax/...), or a path
        # Assumed mean padded length of a fine-tuning / evaluation row (batches are bucketed, not padded to
        # max_len): tagging sentences, NLI pairs, QA windows, Tatoeba sentences.
        row_len=dict(pos=64, ner=32, nli=64, qa=384, tatoeba=32),
    ))
    c.lock()
    return c


def _passed(a: ml_collections.ConfigDict) -> list[str]:
    """deshpande.py arguments of the values given here (booleans as key=true/false, so defaults stay explicit)."""
    out = []
    for key in PASSED:
        value = a[key]
        if isinstance(value, bool):
            out.append(f"{key}={str(value).lower()}")
        elif value:
            out.append(f"{key}={value}")
    return out
