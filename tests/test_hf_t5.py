"""xlt_jax T5 v1.1 against Hugging Face `T5ForConditionalGeneration` with identical weights (extra `hf`).

HF models are built from configs (no download). Batches are real: UD EWT dev sentences encoded by a real
tokenizer, span-corrupted by the pretraining pipeline's `span_corrupt`, rows of different lengths padded.
Both directions: xlt_jax weights written as an HF checkpoint directory and read by `from_pretrained`, and a
randomly initialised HF model (untied lm_head) converted to xlt_jax. Logits must agree to 1e-4 (float32) on
every real decoder position, for scanned and looped layers, uneven sizes (3 heads × 16 ≠ hidden, more
decoder than encoder layers, other bucket settings) and a doubled (transliteration) vocabulary with
sentinels on top.
"""

from __future__ import annotations

import itertools
import json

import jax
import numpy as np
import pytest
from conftest import require_extra  # noqa: E402
from flax import nnx

torch = require_extra("torch", "hf")
transformers = require_extra("transformers", "hf")

from xlt_jax.data.pretrain.span_corruption import span_corrupt  # noqa: E402
from xlt_jax.data.vocab import SPECIALS, VocabLayout  # noqa: E402
from xlt_jax.errors import ConfigError  # noqa: E402
from xlt_jax.interop import hf_checkpoint, hf_t5, tree  # noqa: E402
from xlt_jax.models import build_model, default_model_config, resolve_model_config  # noqa: E402

INPUT_LEN, TARGET_LEN, SENTINELS = 48, 16, 8
RAW_LENGTHS = (45, 20, 33, 12, 40, 27, 16, 38)  # pieces per row before corruption: every row pads differently
torch.set_num_threads(1)

CASES = {
    "scan": (dict(scan_layers=True), 1),
    "loop-uneven": (dict(scan_layers=False, num_decoder_layers=3, heads=3, head_dim=16, relpos_buckets=16,
                         relpos_max_distance=20), 1),
    "scan-translit-vocab": (dict(scan_layers=True), 2),
}  # fmt: skip


def _config(layout: VocabLayout, **overrides):
    config = default_model_config("t5", "tiny")
    config.update(dtype="float32", dropout=0.0, **overrides)
    return config, resolve_model_config(config, layout.size)


@pytest.fixture(scope="module")
def sentence_ids(tiny_tokenizer, data_dir):
    from xlt_jax.data.corpora import conllu_sentences

    pieces = [tiny_tokenizer.encode(s) for s in conllu_sentences(data_dir / "ud" / "en_ewt" / "dev.conllu.gz")]
    return list(itertools.islice((p for p in pieces if len(p) >= max(RAW_LENGTHS)), len(RAW_LENGTHS)))


def span_batch(sentence_ids, layout: VocabLayout) -> dict[str, np.ndarray]:
    """Real span corruption of each row's first RAW_LENGTHS[i] pieces (written in the last vocabulary copy)."""
    shift = layout.base_size * (layout.copies - 1)
    rows = []
    for i, (ids, n) in enumerate(zip(sentence_ids, RAW_LENGTHS, strict=True)):
        raw = np.asarray(ids[:n], np.int32)[None] + shift
        rows.append(span_corrupt(raw, layout=layout, seed=3, example_ids=np.array([i]), draws=np.zeros(1),
                                 inputs_length=INPUT_LEN, targets_length=TARGET_LEN))
    batch = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    assert batch["encoder_attention_mask"].sum(1).min() < INPUT_LEN - 10, "rows must pad differently"
    assert (batch["encoder_input_ids"] >= layout.base_size * layout.copies).any(), "sentinels must occur"
    return batch


def _forward(config, spec):
    """A jitted `(params, batch) -> logits` of the xlt_jax model (structure from `eval_shape`, no init), and
    random parameters of that structure in the initialisers' scales (norm scales near 1)."""
    abstract = nnx.eval_shape(lambda: build_model(config, spec.vocab_size, rngs=nnx.Rngs(0)))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    rng = np.random.default_rng(1)

    def draw(path, leaf):
        names = [str(getattr(k, "key", k)) for k in path]
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        if names[-1] == "scale":
            return 1.0 + 0.1 * noise
        if names[0] == "shared_embedding" or names[-2] == "relpos_bias":
            return noise
        if names[-2] in ("query", "key", "value"):  # [embed, heads, head_dim]; t5x folds 1/√head_dim into q
            return noise / float(np.sqrt(leaf.shape[-3] * (leaf.shape[-1] if names[-2] == "query" else 1)))
        fan_in = leaf.shape[-3] * leaf.shape[-2] if names[-2] == "out" else leaf.shape[-2]
        return noise / float(np.sqrt(fan_in))  # Python floats keep float32

    @jax.jit
    def forward(p, batch):
        model = nnx.merge(graphdef, p, rest)
        return model(batch["encoder_input_ids"], batch["encoder_attention_mask"], batch["decoder_input_ids"])

    return forward, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(params))


def _theirs(hf, batch) -> np.ndarray:
    with torch.no_grad():
        return hf(
            input_ids=torch.from_numpy(batch["encoder_input_ids"].astype(np.int64)),
            attention_mask=torch.from_numpy(batch["encoder_attention_mask"].astype(np.int64)),
            decoder_input_ids=torch.from_numpy(batch["decoder_input_ids"].astype(np.int64)),
        ).logits.numpy()


def _max_delta(ours: np.ndarray, theirs: np.ndarray, batch) -> float:
    real = batch["decoder_loss_mask"] > 0
    return float(np.abs(ours[real] - theirs[real]).max())


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_hugging_face_in_both_directions(case, sentence_ids, tiny_tokenizer, tmp_path):
    overrides, copies = CASES[case]
    layout = VocabLayout(tiny_tokenizer.base_size, copies=copies, num_sentinels=SENTINELS)
    config, spec = _config(layout, **overrides)
    batch = span_batch(sentence_ids, layout)

    # xlt_jax → HF: xlt_jax parameters written as a checkpoint directory, read by `from_pretrained`.
    forward, params = _forward(config, spec)
    config_json = hf_checkpoint.hf_config_dict(spec, "T5ForConditionalGeneration")
    hf_checkpoint.save_hf_checkpoint(tmp_path, hf_t5.to_hf_state_dict(params), config_json)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="eager").eval()
    to_hf = _max_delta(np.asarray(forward(params, batch)), _theirs(hf, batch), batch)

    # HF → xlt_jax: a random HF model, every weight perturbed, its lm_head untied with values of its own.
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(hf_t5.hf_config(spec, attn_implementation="eager"))
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
        head = hf.lm_head.weight
        hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(head) * head.shape[1] ** -0.5)
    hf.eval()
    back = hf_t5.from_hf_state_dict(hf.state_dict(), spec, scan_layers=spec.scan_layers)
    from_hf = _max_delta(np.asarray(forward(back, batch)), _theirs(hf, batch), batch)
    print(f"T5 {case}: max |Δ logits| xlt_jax→HF {to_hf:.2e}, HF→xlt_jax {from_hf:.2e}")
    assert to_hf < 1e-4 and from_hf < 1e-4


def test_conversion_round_trips_reads_torch_files_and_names_bad_tensors(tiny_tokenizer, tmp_path):
    layout = VocabLayout(tiny_tokenizer.base_size, num_sentinels=SENTINELS)
    config, spec = _config(layout, scan_layers=True)
    _, params = _forward(config, spec)
    sd = hf_t5.to_hf_state_dict(params)
    assert not any("relative_attention_bias" in k for k in sd if ".block.0." not in k)  # one bias per stack
    for scan in (True, False):
        again = hf_t5.to_hf_state_dict(hf_t5.from_hf_state_dict(sd, spec, scan_layers=scan))
        assert again.keys() == sd.keys()
        for name, value in again.items():
            np.testing.assert_array_equal(value, sd[name], err_msg=name)
    # A torch file checkpoint (pytorch_model.bin) reads like safetensors; config.json gives the model block.
    torch.save({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, tmp_path / "pytorch_model.bin")
    config_json = hf_checkpoint.hf_config_dict(spec, "MT5ForConditionalGeneration")
    # T5 v1.1 for transformers 4 (untied lm_head) and 5 (no output scaling; unties the differing lm_head).
    assert config_json["tie_word_embeddings"] is False and not config_json.get("scale_decoder_outputs", False)
    (tmp_path / "config.json").write_text(json.dumps(config_json))
    block, loaded, vocab = hf_checkpoint.load_hf_checkpoint(tmp_path)
    assert vocab == spec.vocab_size and resolve_model_config(block, vocab) == spec
    kernel = ("decoder", "logits_dense", "kernel")
    np.testing.assert_array_equal(tree.get(loaded, kernel), tree.get(params, kernel))

    missing = {k: v for k, v in sd.items() if "decoder.block.1." not in k}
    with pytest.raises(ConfigError, match=r"decoder\.block\.1\.layer\.0\.layer_norm\.weight"):
        hf_t5.from_hf_state_dict(missing, spec, scan_layers=True)
    transposed = dict(sd, **{"encoder.block.0.layer.1.DenseReluDense.wo.weight": sd[
        "encoder.block.0.layer.1.DenseReluDense.wo.weight"].T})
    with pytest.raises(ConfigError, match=r"DenseReluDense\.wo\.weight: shape \(128, 64\)"):
        hf_t5.from_hf_state_dict(transposed, spec, scan_layers=True)
    with pytest.raises(ConfigError, match="not: .*extra.weight"):
        hf_t5.from_hf_state_dict(dict(sd, **{"extra.weight": np.zeros(3)}), spec, scan_layers=True)


def test_checkpoint_directories_that_xlt_jax_cannot_represent_are_refused(tmp_path):
    source = f"{tmp_path}/config.json"
    with pytest.raises(ConfigError, match=r"config.json: architectures=\['BertForMaskedLM'\]"):
        hf_checkpoint.architecture({"architectures": ["BertForMaskedLM"], "model_type": "bert"}, source)
    original_t5 = {"model_type": "t5", "feed_forward_proj": "relu", "d_model": 8, "num_heads": 1, "d_kv": 8,
                   "d_ff": 8, "num_layers": 1, "vocab_size": 10}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(original_t5))
    with pytest.raises(ConfigError, match="feed_forward_proj='relu'"):
        hf_checkpoint.load_hf_checkpoint(tmp_path)
    tied = dict(original_t5, feed_forward_proj="gated-gelu", tie_word_embeddings=True)
    with pytest.raises(ConfigError, match="tie_word_embeddings"):
        hf_checkpoint.model_config(tied, source)
    with pytest.raises(ConfigError, match="no model.safetensors"):
        hf_checkpoint.read_state_dict(tmp_path)
    assert SPECIALS.bos == hf_t5.hf_config(_config(VocabLayout(300))[1]).decoder_start_token_id
