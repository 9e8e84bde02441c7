"""xlt_jax's SentencePiece tokenizer as a Hugging Face fast tokenizer (`tokenizer.json`), same ids.

Built with the `tokenizers` library from the SentencePiece model itself, following its settings: the BPE
pieces at their SentencePiece ids (specials 0-4, byte-fallback pieces `<0xNN>`, learned pieces), merges
ranked by piece score, the model's precompiled normaliser (nmt_nfkc), SentencePiece's whitespace handling
(strip, collapse runs of spaces, `▁` for a space, one dummy `▁` prefix) and byte fallback. On text, the ids
are those of `Tokenizer.encode`. Two deliberate differences, on strings real text does not contain: a
literal `<mask>` takes the space before it (HF RoBERTa's `lstrip`, the form pretraining masks produce)
where SentencePiece emits a separate `▁`; a literal `<s>`, `</s>`, `<pad>` or `<unk>` is the special id.

Sequences are framed as xlt_jax frames task inputs: `<s> A </s>` and `<s> A </s></s> B </s>`. T5 sentinels
`<extra_id_k>` are special tokens at their layout ids (the top of the vocabulary). Ids of a transliterated
copy (id + kV) have no surface form of their own and are not in this vocabulary.

The xlt_jax tokenizer itself is saved alongside (`xlt_jax_tokenizer/`), so an exported directory can be
imported back (`pretrained=hf:DIR`). No slow-tokenizer file (`spiece.model`) is written on purpose: HF's
slow T5/XLM-R classes would read it with their own special-id conventions (XLM-R shifts every id by one).
"""

from __future__ import annotations

import json
import os
import pathlib

from xlt_jax.data.tokenizer import SPECIAL_PIECES, Tokenizer
from xlt_jax.data.vocab import SPECIALS, VocabLayout

XLT_TOKENIZER_DIR = "xlt_jax_tokenizer"
TOKENIZER_CLASS = "PreTrainedTokenizerFast"  # the generic class: loads tokenizer.json as written
_NORMAL, _USER_DEFINED = 1, 4  # SentencePiece piece types


def _proto(tokenizer: Tokenizer):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(tokenizer.model_proto)
    return proto


def _bpe_merges(pieces) -> list[tuple[str, str]]:
    """Every split of a normal piece into two normal pieces, ranked by the merged piece's score (higher
    first), as SentencePiece's BPE encoder picks the highest-scoring merge."""
    normal = {p.piece: (p.score, i) for i, p in enumerate(pieces) if p.type == _NORMAL}
    ranked = []
    for piece, (score, index) in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                ranked.append((-score, index, left, right))
    return [(left, right) for _, _, left, right in sorted(ranked)]


def fast_tokenizer(tokenizer: Tokenizer, layout: VocabLayout | None = None):
    """A `tokenizers.Tokenizer` that encodes text to the ids `tokenizer.encode` gives (see module docstring)."""
    from tokenizers import AddedToken, Regex, decoders, models, normalizers, processors
    from tokenizers import Tokenizer as FastTokenizer

    layout = layout or tokenizer.layout()
    proto = _proto(tokenizer)
    if proto.trainer_spec.model_type != 2:
        raise ValueError(f"only BPE SentencePiece models convert (model_type {proto.trainer_spec.model_type})")
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    vocab.update({_sentinel(k): int(layout.sentinel(k)) for k in range(layout.num_sentinels)})
    fast = FastTokenizer(models.BPE(
        vocab=vocab, merges=_bpe_merges(proto.pieces), unk_token=SPECIAL_PIECES[SPECIALS.unk], fuse_unk=True,
        byte_fallback=proto.trainer_spec.byte_fallback,
    ))  # fmt: skip
    spec = proto.normalizer_spec
    steps = [normalizers.Precompiled(spec.precompiled_charsmap)] if spec.precompiled_charsmap else []
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", "▁"))
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend("▁"))  # in the normaliser: a pre-tokenizer would skip stripped text
    fast.normalizer = normalizers.Sequence(steps)
    fast.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(content=" ", left=1),
    ])  # fmt: skip
    bos, eos = SPECIAL_PIECES[SPECIALS.bos], SPECIAL_PIECES[SPECIALS.eos]
    fast.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, SPECIALS.bos), (eos, SPECIALS.eos)],
    )
    controls = [SPECIAL_PIECES[i] for i in (SPECIALS.bos, SPECIALS.pad, SPECIALS.eos, SPECIALS.unk)]
    fast.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in controls])
    fast.add_special_tokens([_mask_token()] + [AddedToken(_sentinel(k), special=True, normalized=False)
                                               for k in range(layout.num_sentinels)])
    return fast


def _sentinel(k: int) -> str:
    return f"<extra_id_{k}>"


def _mask_token():
    from tokenizers import AddedToken

    return AddedToken(SPECIAL_PIECES[SPECIALS.mask], lstrip=True, special=True, normalized=False)


def save_hf_tokenizer(
    tokenizer: Tokenizer, directory: str | os.PathLike, *, layout: VocabLayout | None = None, max_len: int = 512
) -> pathlib.Path:
    """Write `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json` and `xlt_jax_tokenizer/`."""
    from transformers import PreTrainedTokenizerFast

    layout = layout or tokenizer.layout()
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pieces = {f"{name}_token": SPECIAL_PIECES[getattr(SPECIALS, name)] for name in ("bos", "eos", "unk", "pad")}
    hf = PreTrainedTokenizerFast(
        tokenizer_object=fast_tokenizer(tokenizer, layout), cls_token=pieces["bos_token"],
        sep_token=pieces["eos_token"], mask_token=_mask_token(), model_max_length=max_len, **pieces,
        additional_special_tokens=[_sentinel(k) for k in range(layout.num_sentinels)],
    )
    hf.save_pretrained(os.fspath(directory))
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = TOKENIZER_CLASS
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    tokenizer.save(directory / XLT_TOKENIZER_DIR)
    return directory
