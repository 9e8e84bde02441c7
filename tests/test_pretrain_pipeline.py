"""Pretraining input pipeline on real text: shards, packing, MLM, span corruption, sampling, state, hosts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xlt_jax.data.pretrain import mlm, packing, pipeline, shards, span_corruption
from xlt_jax.data.readers.text import read_lines
from xlt_jax.data.sampling import temperature_probs
from xlt_jax.data.transforms import parse
from xlt_jax.data.vocab import SPECIALS, VocabLayout
from xlt_jax.errors import ConfigError, DataFormatError

LANGS = ("en", "fr", "hi", "ar")


@pytest.fixture(scope="module")
def texts(data_dir) -> dict[str, list[str]]:
    return {
        lang: list(read_lines(data_dir / f"raw/lingua_leipzig_sample/{lang}.sentences.txt.gz"))
        for lang in LANGS
    }


@pytest.fixture(scope="module")
def tokenizer(request, texts, tmp_path_factory):
    """The shared `tiny_tokenizer` if conftest has it, else a small SentencePiece model trained here."""
    try:
        return request.getfixturevalue("tiny_tokenizer")
    except pytest.FixtureLookupError:
        from xlt_jax.data.tokenizer import train_tokenizer

        return train_tokenizer(texts, 1000, tmp_path_factory.mktemp("spm") / "spm", hard_vocab_limit=False)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("shards")


def make_config(cache_dir, **overrides):
    cfg = pipeline.default_config()
    cfg.update(dict(seq_len=64, global_batch_size=16, cache_dir=str(cache_dir), eval_fraction=0.05))
    cfg.update(overrides)
    return cfg


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# -- shards and packing -------------------------------------------------------------------------------


def test_shards_frame_lines_and_are_reused(texts, tokenizer, cache_dir):
    lines = texts["en"][:300]
    corpus = shards.ensure_shards(lines, tokenizer, cache_dir)
    assert corpus.num_lines == 300
    for i in (0, 17, 299):
        np.testing.assert_array_equal(
            corpus.line(i), [SPECIALS.bos, *tokenizer.encode(lines[i]), SPECIALS.eos]
        )
    assert corpus.index["tokenizer"] == shards.tokenizer_fingerprint(tokenizer)

    class NoEncode:  # a rerun must not tokenize again
        base_size = tokenizer.base_size
        fingerprint = corpus.index["tokenizer"]

        def encode_batch(self, texts):
            raise AssertionError("shards were re-tokenized")

    again = shards.ensure_shards(lines, NoEncode(), cache_dir)
    assert again.directory == corpus.directory
    other = shards.ensure_shards(lines[:299], tokenizer, cache_dir)  # other content, other key
    assert other.directory != corpus.directory


def test_multi_shard_corpus_reads_like_one_stream(texts, tokenizer, tmp_path):
    lines = texts["fr"][:500]
    one = shards.ensure_shards(lines, tokenizer, tmp_path / "a")
    many = shards.ensure_shards(lines, tokenizer, tmp_path / "b", max_shard_tokens=1000)
    assert len(many.index["shards"]) > 3
    np.testing.assert_array_equal(one.stream(), many.stream())
    np.testing.assert_array_equal(one.line_offsets, many.line_offsets)
    positions = np.random.default_rng(0).integers(0, one.num_tokens, size=(7, 33))
    np.testing.assert_array_equal(one.take(positions), many.take(positions))


def test_corrupt_shard_is_reported(texts, tokenizer, tmp_path):
    corpus = shards.ensure_shards(texts["en"][:50], tokenizer, tmp_path)
    shard = corpus.directory / corpus.index["shards"][0]["tokens"]
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(DataFormatError, match="tokens-00000.bin"):
        shards.ShardedCorpus.open(corpus.directory)


def test_packing_preserves_the_token_stream(texts, tokenizer, cache_dir):
    corpus = shards.ensure_shards(texts["hi"], tokenizer, cache_dir)
    stream, L = corpus.stream(), 100
    starts = packing.block_starts(corpus.line_offsets, L)
    blocks = packing.gather_blocks(corpus, starts, L)
    assert len(blocks) == corpus.num_tokens // L
    np.testing.assert_array_equal(blocks.reshape(-1), stream[: len(blocks) * L])
    np.testing.assert_array_equal(blocks, packing.pack_stream(stream, L))
    # HF-style groups of 100 lines: each group's stream is cut on its own and its remainder dropped.
    grouped = packing.gather_blocks(corpus, packing.block_starts(corpus.line_offsets, L, group_lines=100), L)
    expected = []
    for g in range(0, corpus.num_lines, 100):
        part = stream[corpus.line_offsets[g] : corpus.line_offsets[min(g + 100, corpus.num_lines)]]
        expected.append(part[: len(part) // L * L])
    np.testing.assert_array_equal(grouped.reshape(-1), np.concatenate(expected))


# -- MLM ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packed(texts, tokenizer, cache_dir):
    corpus = shards.ensure_shards(texts["en"] + texts["fr"], tokenizer, cache_dir)
    return packing.pack_stream(corpus.stream(), 128)


def test_mlm_statistics_on_a_large_batch(packed, tokenizer):
    layout = tokenizer.layout()
    ids = packed.copy()
    ids[::3, -20:] = SPECIALS.pad  # padded rows, as in a final eval batch
    out = mlm.mask_tokens(
        ids, layout=layout, seed=3, example_ids=np.arange(len(ids)), draws=np.zeros(len(ids))
    )
    selected = out["loss_mask"] > 0
    special = np.isin(ids, SPECIALS.all)
    assert not selected[special].any()
    assert (
        out["attention_mask"][ids == SPECIALS.pad].sum() == 0
        and out["attention_mask"][ids != SPECIALS.pad].all()
    )
    rate = selected.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.01, rate
    masked = selected & (out["input_ids"] == SPECIALS.mask)
    kept = selected & (out["input_ids"] == ids)
    randomized = selected & ~masked & ~kept
    n = selected.sum()
    assert abs(masked.sum() / n - 0.8) < 0.02 and abs(kept.sum() / n - 0.1) < 0.015, (
        masked.sum(),
        kept.sum(),
        n,
    )
    assert abs(randomized.sum() / n - 0.1) < 0.015
    np.testing.assert_array_equal(out["targets"], np.where(selected, ids, 0))
    np.testing.assert_array_equal(out["input_ids"][~selected], ids[~selected])
    # Same example and draw in another batch: same mask; next draw (epoch): a new mask.
    sub = mlm.mask_tokens(ids[5:9], layout=layout, seed=3, example_ids=np.arange(5, 9), draws=np.zeros(4))
    np.testing.assert_array_equal(sub["input_ids"], out["input_ids"][5:9])
    redraw = mlm.mask_tokens(ids[5:9], layout=layout, seed=3, example_ids=np.arange(5, 9), draws=np.ones(4))
    assert (redraw["loss_mask"] != sub["loss_mask"]).any()


def test_gathered_predictions_are_the_dense_selection(packed, tokenizer):
    """With P slots per row the batch holds exactly the dense selection (same inputs, targets, weights)."""
    from scipy import stats

    layout = tokenizer.layout()
    ids = packed[:256].copy()
    ids[::4, -30:] = SPECIALS.pad
    rows = np.arange(len(ids))
    dense = mlm.mask_tokens(ids, layout=layout, seed=5, example_ids=rows, draws=np.zeros(len(ids)))
    p = mlm.auto_max_predictions(ids.shape[1], 0.15)
    length = ids.shape[1]
    assert p % 8 == 0 and stats.binom.sf(p, length, 0.15) < 1e-5 <= stats.binom.sf(p - 8, length, 0.15)
    gathered = mlm.mask_tokens(
        ids, layout=layout, seed=5, example_ids=rows, draws=np.zeros(len(ids)), max_predictions=p
    )
    assert "targets" not in gathered and gathered["mlm_positions"].shape == (len(ids), p)
    np.testing.assert_array_equal(gathered["input_ids"], dense["input_ids"])
    targets, weights = mlm.dense_targets(gathered)
    np.testing.assert_array_equal(targets, dense["targets"])
    np.testing.assert_array_equal(weights, dense["loss_mask"])
    assert not gathered["mlm_overflow"].any()
    positions = gathered["mlm_positions"]
    valid = gathered["mlm_weights"] > 0
    assert (np.diff(positions, axis=1)[valid[:, 1:]] > 0).all()  # ascending positions
    assert (np.diff(valid.astype(int), axis=1) <= 0).all()  # padding slots last
    np.testing.assert_array_equal(gathered["mlm_targets"][valid], np.take_along_axis(ids, positions, 1)[valid])


def test_grouped_predictions_are_the_dense_selection_in_fewer_rows(packed, tokenizer):
    """Groups of G sequences share one budget of rows: the same inputs, targets and weights as the dense
    selection, in ~half the rows per-sequence budgets need (the sum of G counts varies relatively less)."""
    layout = tokenizer.layout()
    ids = packed[:256].copy()
    ids[::4, -30:] = SPECIALS.pad
    rows, length, group = np.arange(len(ids)), ids.shape[1], 16
    dense = mlm.mask_tokens(ids, layout=layout, seed=5, example_ids=rows, draws=np.zeros(len(ids)))
    budget = pipeline._max_predictions(-1, length, 0.15, group)
    assert budget <= 0.6 * group * mlm.auto_max_predictions(length, 0.15)  # L = 128: 384 rows, not 640
    grouped = mlm.mask_tokens(
        ids, layout=layout, seed=5, example_ids=rows, draws=np.zeros(len(ids)), max_predictions=budget,
        group_size=group,
    )
    assert grouped["mlm_positions"].shape == (len(ids) // group, budget)
    assert grouped["mlm_overflow"].shape == (len(ids) // group,) and not grouped["mlm_overflow"].any()
    np.testing.assert_array_equal(grouped["input_ids"], dense["input_ids"])
    targets, weights = mlm.dense_targets(grouped)
    np.testing.assert_array_equal(targets, dense["targets"])
    np.testing.assert_array_equal(weights, dense["loss_mask"])
    # A group's flat positions point at its own sequences: row g covers sequences g·G .. g·G + G - 1.
    valid = grouped["mlm_weights"] > 0
    flat = ids.reshape(len(ids) // group, group * length)
    want = np.take_along_axis(flat, grouped["mlm_positions"], 1)[valid]
    np.testing.assert_array_equal(grouped["mlm_targets"][valid], want)
    with pytest.raises(ConfigError, match="mlm_group_size=24 must divide the batch of 256"):
        mlm.mask_tokens(ids, layout=layout, seed=5, example_ids=rows, draws=np.zeros(len(ids)),
                        max_predictions=budget, group_size=24)


def test_gathered_predictions_cap_overflowing_rows(packed, tokenizer):
    """Rows selecting more than P keep a random P of their positions; the rest are neither masked nor
    predicted, and the dropped count is reported."""
    layout = tokenizer.layout()
    ids = packed[:64]
    rows = np.arange(len(ids))
    dense = mlm.mask_tokens(ids, layout=layout, seed=2, example_ids=rows, draws=np.zeros(len(ids)))
    capped = mlm.mask_tokens(
        ids, layout=layout, seed=2, example_ids=rows, draws=np.zeros(len(ids)), max_predictions=8
    )
    _, kept = mlm.dense_targets(capped)
    selected = dense["loss_mask"] > 0
    np.testing.assert_array_equal(kept.sum(1), np.minimum(selected.sum(1), 8))
    np.testing.assert_array_equal(capped["mlm_overflow"], selected.sum(1) - kept.sum(1))
    assert capped["mlm_overflow"].sum() > 100
    assert not (kept.astype(bool) & ~selected).any()
    dropped = selected & ~kept.astype(bool)
    np.testing.assert_array_equal(capped["input_ids"][dropped], ids[dropped])  # unmasked, as in the input
    np.testing.assert_array_equal(capped["input_ids"][kept > 0], dense["input_ids"][kept > 0])
    # Not simply the first 8 selected positions of each row.
    first8 = np.cumsum(selected, axis=1) <= 8
    assert ((selected & first8) != kept.astype(bool)).any()


@pytest.mark.parametrize("mode", mlm.REPLACEMENT_MODES)
def test_mlm_random_replacements_in_configured_range(packed, tokenizer, mode):
    layout = tokenizer.layout(copies=2)
    V = layout.base_size
    derived, _ = parse("translit", tokenizer.layout()).apply_ids(
        packed, seed=0, example_ids=np.arange(len(packed))
    )
    out = mlm.mask_tokens(
        derived,
        layout=layout,
        seed=1,
        example_ids=np.arange(len(packed)),
        draws=np.zeros(len(packed)),
        vocab_copy=np.ones(len(packed)),
        config=mlm.MLMConfig(random_replacement=mode),
    )
    selected = out["loss_mask"] > 0
    assert (derived[selected] >= V).all()  # transliterated text; shifted specials never selected
    assert not np.isin(derived[selected] - V, SPECIALS.all).any()
    replaced = out["input_ids"][
        selected & (out["input_ids"] != derived) & (out["input_ids"] != SPECIALS.mask)
    ]
    assert len(replaced) > 100
    low, high = (0, V) if mode == "original_vocab" else (V, 2 * V)
    assert ((replaced >= low) & (replaced < high)).all()
    assert len(np.unique(replaced)) > 0.5 * min(len(replaced), V)  # spread over the range, not one id


# -- span corruption ----------------------------------------------------------------------------------


def test_random_spans_helper_lengths():
    assert span_corruption.random_spans_helper(512, 0.15, 3.0) == (568, 114)  # T5's feature lengths
    assert span_corruption.random_spans_helper(128, 0.15, 3.0) == (141, 29)
    for inputs_length in (64, 128, 256, 512, 1024):
        raw, targets = span_corruption.random_spans_helper(inputs_length)
        assert span_corruption.corrupted_lengths(raw, 0.15, 3.0) == (inputs_length, targets)
        assert span_corruption.corrupted_lengths(raw + 1, 0.15, 3.0)[0] > inputs_length


def reconstruct(inputs: np.ndarray, targets: np.ndarray, layout: VocabLayout) -> np.ndarray:
    """Put every target span back in place of its sentinel in the inputs."""
    spans, current = {}, None
    for t in targets[:-1]:  # drop EOS
        if layout.is_sentinel(t):
            current = int(t)
            spans[current] = []
        else:
            spans[current].append(int(t))
    out = []
    for t in inputs[:-1]:
        out.extend(spans[int(t)] if layout.is_sentinel(t) else [int(t)])
    return np.array(out)


def test_span_corruption_invariants(packed, tokenizer):
    layout = VocabLayout(tokenizer.base_size, 1, num_sentinels=100)
    raw_len, targets_len = span_corruption.random_spans_helper(128)
    raw = packing.pack_stream(packed.reshape(-1), raw_len)[:64]
    ex, draws = np.arange(64), np.zeros(64)
    out = span_corruption.span_corrupt(
        raw, layout=layout, seed=5, example_ids=ex, draws=draws, inputs_length=128, targets_length=targets_len
    )
    assert out["encoder_input_ids"].shape == (64, 128) and out["decoder_targets"].shape == (64, targets_len)
    assert out["encoder_attention_mask"].all() and out["decoder_loss_mask"].all()
    np.testing.assert_array_equal(out["decoder_input_ids"][:, 0], SPECIALS.bos)
    np.testing.assert_array_equal(out["decoder_input_ids"][:, 1:], out["decoder_targets"][:, :-1])
    num_noise, num_spans = span_corruption.noise_counts(raw_len, 0.15, 3.0)
    for i in range(64):
        inputs, targets = out["encoder_input_ids"][i], out["decoder_targets"][i]
        assert inputs[-1] == SPECIALS.eos and targets[-1] == SPECIALS.eos
        np.testing.assert_array_equal(reconstruct(inputs, targets, layout), raw[i])
        expected_sentinels = layout.sentinel(np.arange(num_spans))  # extra_id_0, 1, ... in order
        np.testing.assert_array_equal(inputs[layout.is_sentinel(inputs)], expected_sentinels)
        np.testing.assert_array_equal(targets[layout.is_sentinel(targets)], expected_sentinels)
        assert (~layout.is_sentinel(targets)).sum() - 1 == num_noise
    mask = span_corruption.random_spans_noise_mask(raw_len, seed=5, example_ids=ex, draws=draws)
    assert (mask.sum(1) == num_noise).all() and not mask[:, 0].any() and mask[:, -1].all()
    runs = (mask[:, 1:] & ~mask[:, :-1]).sum(1)
    assert (runs == num_spans).all()
    assert len({m.tobytes() for m in mask}) == 64  # every example draws its own spans


# -- the pipeline --------------------------------------------------------------------------------------


def uncorrupted(batch):
    """The MLM input sequence before masking (targets where predicted)."""
    targets, loss_mask = mlm.dense_targets(batch)
    return np.where(loss_mask > 0, targets, batch["input_ids"])


@pytest.mark.parametrize("spec", ["inv", "translit+perm"])
def test_bilingual_is_half_derived_and_derived_is_the_transformed_original(texts, tokenizer, cache_dir, spec):
    data = pipeline.build_pretrain_data(
        make_config(cache_dir, transform=spec), tokenizer, {"en": texts["en"]}
    )
    n = data.sources[0].num_train
    assert data.sources[1].num_train == n and data.lang_names == [
        "en",
        f"en~{parse(spec, tokenizer.layout()).name}",
    ]
    gb = 16
    it = data.train_iterator()
    batches = take(it, -(-2 * n // gb))
    lang = np.concatenate([b["lang_id"] for b in batches])[: 2 * n]
    assert (lang == 1).sum() == n and (lang == 0).sum() == n  # one epoch: exactly 50/50
    source, block, _, _ = data.global_rows(0, gb, [0, 0])
    transform = parse(spec, tokenizer.layout())
    original = packing.gather_blocks(data.sources[0].corpus, data.sources[0].starts[block], data.block_len)
    expected = np.where(
        source[:, None] == 1, transform.apply_ids(original, seed=0, example_ids=block)[0], original
    )
    np.testing.assert_array_equal(uncorrupted(batches[0]), expected)
    np.testing.assert_array_equal(batches[0]["lang_id"], source)
    assert data.vocab_size == tokenizer.base_size * transform.copies
    # Every epoch visits each (language, block) once, in a new order, with a new masking draw.
    source, block, draw, _ = data.global_rows(0, 4 * n, [0, 0])
    epochs = [source[e * 2 * n : (e + 1) * 2 * n] * n + block[e * 2 * n : (e + 1) * 2 * n] for e in range(2)]
    assert sorted(epochs[0].tolist()) == sorted(epochs[1].tolist()) == list(range(2 * n))
    assert (epochs[0] != epochs[1]).mean() > 0.9
    np.testing.assert_array_equal(draw, np.repeat([0, 1], 2 * n))
    again = data.build_rows(source[:4], block[:4], np.ones(4, np.int64))
    assert (mlm.dense_targets(again)[1] != mlm.dense_targets(batches[0])[1][:4]).any()


def test_word_level_derived_corpus_from_outside(texts, tokenizer, cache_dir):
    transform = parse("inv@word", tokenizer.layout())
    derived_lines = [transform.apply_text(line, seed=0, example_id=i) for i, line in enumerate(texts["fr"])]
    made_here = pipeline.build_pretrain_data(
        make_config(cache_dir, langs="fr", transform="inv@word"), tokenizer, {"fr": texts["fr"]}
    )
    given = pipeline.build_pretrain_data(
        make_config(cache_dir, langs="fr", transform="inv@word"),
        tokenizer,
        {"fr": texts["fr"]},
        derived_corpus=derived_lines,
    )
    assert given.sources[1].corpus.directory != given.sources[0].corpus.directory
    np.testing.assert_array_equal(given.sources[1].corpus.stream(), made_here.sources[1].corpus.stream())
    derived = shards.ensure_shards(derived_lines, tokenizer, cache_dir)
    np.testing.assert_array_equal(given.sources[1].corpus.stream(), derived.stream())
    assert given.sources[0].num_train == given.sources[1].num_train
    assert_batches_equal(next(given.train_iterator()), next(made_here.train_iterator()))


def test_multilingual_proportions_follow_temperature(texts, tokenizer, cache_dir):
    cfg = make_config(
        cache_dir,
        mode="multilingual",
        langs="+".join(LANGS),
        transform="none",
        alpha=0.3,
        seq_len=16,
        global_batch_size=2000,
    )
    data = pipeline.build_pretrain_data(cfg, tokenizer, texts)
    q = temperature_probs(np.array([s.num_train for s in data.sources]), 0.3)
    np.testing.assert_allclose(data.probs, q)
    it = data.train_iterator()
    lang = np.concatenate([next(it)["lang_id"] for _ in range(50)])
    realised = np.bincount(lang, minlength=len(LANGS)) / len(lang)
    assert len(lang) == 100_000
    np.testing.assert_allclose(realised, q, atol=0.01)
    assert it.counts == np.bincount(lang, minlength=len(LANGS)).tolist()
    # Each language is an epoch-shuffled stream: its first n draws visit every block exactly once.
    sizes = np.array([src.num_train for src in data.sources])
    source, block, draw, counts = data.global_rows(0, int(1.2 * (sizes / q).max()), [0] * len(LANGS))
    assert (np.array(counts) > sizes).all()
    for s, n in enumerate(sizes):
        assert sorted(block[source == s][:n].tolist()) == list(range(n))
        assert (draw[source == s][:n] == 0).all() and draw[source == s][n] == 1


@pytest.mark.parametrize("mode", ["bilingual", "multilingual", "span"])
def test_state_restore_gives_the_same_next_batches(texts, tokenizer, cache_dir, mode):
    small = {lang: lines[:150] for lang, lines in texts.items()}  # 60 batches cross an epoch
    if mode == "multilingual":
        overrides, corpora = dict(mode="multilingual", langs="en+hi+ar", transform="none"), small
    elif mode == "span":
        overrides, corpora = dict(objective="span", transform="translit+inv"), {"en": small["en"]}
    else:
        overrides, corpora = dict(transform="perm"), {"en": small["en"]}
    first = pipeline.build_pretrain_iterator(make_config(cache_dir, **overrides), tokenizer, corpora)
    take(first, 60)
    state = json.loads(json.dumps(first.get_state()))
    expected = take(first, 4)
    sizes = [src.num_train for src in first.data.sources]
    if mode == "multilingual":  # some language is past its first epoch
        assert any(c > n for c, n in zip(state["counts"], sizes, strict=True))
    else:
        assert state["position"] == 60 * 16 > sum(sizes)
    restored = pipeline.build_pretrain_iterator(make_config(cache_dir, **overrides), tokenizer, corpora)
    restored.set_state(state)
    for a, b in zip(expected, take(restored, 4), strict=True):
        assert_batches_equal(a, b)
    # The state is a stream position: a run may resume with another global batch size.
    halved = pipeline.build_pretrain_iterator(
        make_config(cache_dir, global_batch_size=8, **overrides), tokenizer, corpora
    )
    halved.set_state(state)
    two = take(halved, 2)
    assert_batches_equal({k: np.concatenate([two[0][k], two[1][k]]) for k in two[0]}, expected[0])
    other = pipeline.build_pretrain_iterator(
        make_config(cache_dir, **{**overrides, "seed": 7}), tokenizer, corpora
    )
    with pytest.raises(ConfigError, match="fingerprint"):
        other.set_state(state)


def test_hosts_read_disjoint_slices_of_the_global_batch(texts, tokenizer, cache_dir):
    cfg = make_config(cache_dir, mode="multilingual", langs="en+fr", transform="none", global_batch_size=16)
    data = pipeline.build_pretrain_data(cfg, tokenizer, texts)
    single = take(data.train_iterator(), 3)
    hosts = [take(data.train_iterator(h, 4), 3) for h in range(4)]
    for step in range(3):
        for key in single[step]:
            parts = [hosts[h][step][key] for h in range(4)]
            assert all(len(p) == 4 for p in parts)
            np.testing.assert_array_equal(np.concatenate(parts), single[step][key], err_msg=key)
    # The hosts' rows are distinct sequences: no two hosts share a (source, block, draw).
    source, block, draw, _ = data.global_rows(0, 16, [0, 0])
    keys = [
        set(
            zip(
                source[h * 4 : (h + 1) * 4],
                block[h * 4 : (h + 1) * 4],
                draw[h * 4 : (h + 1) * 4],
                strict=True,
            )
        )
        for h in range(4)
    ]
    assert sum(len(k) for k in keys) == len(set().union(*keys)) == 16
    eval_single = list(data.eval_batches())
    eval_hosts = [list(data.eval_batches(h, 4)) for h in range(4)]
    for i, batch in enumerate(eval_single):
        np.testing.assert_array_equal(
            np.concatenate([eval_hosts[h][i]["input_ids"] for h in range(4)]), batch["input_ids"]
        )
    with pytest.raises(ConfigError, match="divisible"):
        data.train_iterator(0, 3)


@pytest.mark.parametrize("objective", ["mlm", "span"])
def test_batches_do_not_depend_on_the_batch_size(texts, tokenizer, cache_dir, objective):
    def stream(gb, steps):
        cfg = make_config(cache_dir, objective=objective, global_batch_size=gb, transform="translit+perm")
        batches = take(pipeline.build_pretrain_iterator(cfg, tokenizer, {"en": texts["en"]}), steps)
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

    assert_batches_equal(stream(8, 6), stream(48, 1))


def test_held_out_split(texts, tokenizer, cache_dir):
    data = pipeline.build_pretrain_data(
        make_config(cache_dir, eval_fraction=0.1, eval_batch_size=8), tokenizer, {"en": texts["en"]}
    )
    src = data.sources[0]
    num_eval = len(src.starts) - src.num_train
    assert num_eval == int(np.ceil(0.1 * len(src.starts)))
    batches = list(data.eval_batches())
    lang = np.concatenate([b["lang_id"] for b in batches])
    real = np.concatenate([b["attention_mask"].any(1) for b in batches])
    assert real.sum() == 2 * num_eval and (lang[real] == np.tile([0, 1], num_eval)).all()  # interleaved
    assert not np.concatenate([mlm.dense_targets(b)[1] for b in batches])[~real].any()
    first_eval = packing.gather_blocks(
        src.corpus, src.starts[src.num_train : src.num_train + 1], data.block_len
    )
    np.testing.assert_array_equal(uncorrupted(batches[0])[:1], first_eval)
    # Training never visits a held-out block, and eval batches are the same every time.
    source, block, _, _ = data.global_rows(0, 4 * src.num_train, [0, 0])
    assert block.max() < src.num_train
    assert_batches_equal(batches[-1], list(data.eval_batches())[-1])


@pytest.mark.parametrize("sizes", [[50, 7, 0, 23], [1, 1], [120, 3, 61, 61, 9]])
def test_held_out_prefixes_are_proportional_across_languages(sizes):
    source, item = pipeline.interleave_proportionally([np.arange(100, 100 + n) for n in sizes])
    every = [(s, 100 + j) for s, n in enumerate(sizes) for j in range(n)]
    assert sorted(zip(source.tolist(), item.tolist(), strict=True)) == every
    for s in range(len(sizes)):
        assert (np.diff(item[source == s]) == 1).all()  # each source keeps its own order
    share = np.array(sizes) / sum(sizes)
    for k in range(1, len(source) + 1):
        counts = np.bincount(source[:k], minlength=len(sizes))
        assert (np.abs(counts - k * share) < 1.5).all(), (k, counts)


def test_monolingual_derived_replace_mode_uses_its_own_vocabulary(texts, tokenizer, cache_dir):
    cfg = make_config(cache_dir, mode="monolingual", transform="translit", random_replacement="same_language")
    data = pipeline.build_pretrain_data(cfg, tokenizer, {"en": texts["en"]})
    V = tokenizer.base_size
    assert data.lang_names == ["en~translit"] and data.vocab_size == 2 * V
    batch = next(data.train_iterator())
    assert not batch["lang_id"].any()
    ids = uncorrupted(batch)
    assert ((ids >= V) | np.isin(ids, [SPECIALS.bos, SPECIALS.eos])).all()
    replaced = batch["input_ids"][(mlm.dense_targets(batch)[1] > 0) & (batch["input_ids"] != ids)]
    replaced = replaced[replaced != SPECIALS.mask]
    assert len(replaced) and (replaced >= V).all() and (replaced < 2 * V).all()


def test_config_errors(texts, tokenizer, cache_dir):
    corpora = {"en": texts["en"]}
    with pytest.raises(ConfigError, match="data.bogus"):
        pipeline.build_pretrain_data(_with_unknown_key(cache_dir), tokenizer, corpora)
    with pytest.raises(ConfigError, match="needs data.transform"):
        pipeline.build_pretrain_data(make_config(cache_dir, transform="none"), tokenizer, corpora)
    with pytest.raises(ConfigError, match="random_replacement"):
        pipeline.build_pretrain_data(make_config(cache_dir, random_replacement="nearby"), tokenizer, corpora)
    with pytest.raises(ConfigError, match="mlm_group_size=-1 .* needs the mesh"):  # the trainer resolves it
        pipeline.build_pretrain_data(make_config(cache_dir, mlm_group_size=-1), tokenizer, corpora)
    with pytest.raises(ConfigError, match="mlm_group_size=-2: use 0"):
        pipeline.build_pretrain_data(make_config(cache_dir, mlm_group_size=-2), tokenizer, corpora)
    with pytest.raises(ConfigError, match="no corpus given"):
        pipeline.build_pretrain_data(make_config(cache_dir, langs="fr"), tokenizer, corpora)
    with pytest.raises(ConfigError, match="sentinels"):
        pipeline.build_pretrain_data(
            make_config(cache_dir, objective="span", num_sentinels=2), tokenizer, corpora
        ).train_iterator().__next__()


def _with_unknown_key(cache_dir):
    cfg = make_config(cache_dir)
    cfg.unlock()
    cfg.bogus = 1
    return cfg
