"""Temperature sampling over languages: q_l ∝ p_l^α and the per-position language draw."""

from __future__ import annotations

import numpy as np
import pytest

from xlt_jax.data.sampling import sample_languages, temperature_probs

# Training-sentence counts of the WikiANN splits in shared/data (MANIFEST: en, fr, hi, ar train sizes).
WIKIANN_TRAIN = {"en": 20_000, "fr": 20_000, "hi": 5_000, "ar": 20_000}


def test_alpha_one_gives_natural_proportions():
    q = temperature_probs(WIKIANN_TRAIN, 1.0)
    counts = np.array(list(WIKIANN_TRAIN.values()), dtype=float)
    np.testing.assert_allclose(q, counts / counts.sum())


def test_alpha_formula_and_order():
    q = temperature_probs(WIKIANN_TRAIN, 0.3)
    p = np.array(list(WIKIANN_TRAIN.values()), dtype=float)
    p /= p.sum()
    expected = p**0.3 / (p**0.3).sum()
    np.testing.assert_allclose(q, expected)
    # Flattening: the small language gains share, the large ones lose it, order follows the mapping.
    assert q[2] > p[2] and q[0] < p[0]
    np.testing.assert_allclose(temperature_probs(np.array([1, 4]), 0.5), [1 / 3, 2 / 3])


def test_alpha_to_zero_is_uniform_and_zero_counts_stay_zero():
    np.testing.assert_allclose(temperature_probs(WIKIANN_TRAIN, 1e-9), np.full(4, 0.25), atol=1e-8)
    q = temperature_probs({"en": 10, "xx": 0, "hi": 1}, 1e-9)
    np.testing.assert_allclose(q, [0.5, 0.0, 0.5], atol=1e-8)


@pytest.mark.parametrize(
    ("counts", "alpha", "match"),
    [
        ({"en": 10, "hi": -1}, 0.3, "'hi'"),
        ({"en": 0, "hi": 0}, 0.3, "en, hi"),
        ({"en": 1, "fr": float("nan")}, 0.3, "'fr'"),
        ({"en": 1}, 0.0, "alpha"),
        ({"en": 1}, -1.0, "alpha"),
        ({}, 0.3, "at least one"),
    ],
)
def test_invalid_inputs_name_the_problem(counts, alpha, match):
    with pytest.raises(ValueError, match=match):
        temperature_probs(counts, alpha)


def test_realised_proportions_within_one_percent_over_100k():
    q = temperature_probs(WIKIANN_TRAIN, 0.3)
    draws = sample_languages(q, seed=7, positions=np.arange(100_000))
    realised = np.bincount(draws, minlength=len(q)) / draws.size
    np.testing.assert_allclose(realised, q, atol=0.01)
    assert draws.dtype == np.int32


def test_draws_are_a_function_of_seed_and_position_only():
    q = temperature_probs(WIKIANN_TRAIN, 0.3)
    positions = np.arange(5_000)
    whole = sample_languages(q, 3, positions)
    np.testing.assert_array_equal(whole, sample_languages(q, 3, positions))
    # Batch size and iteration order do not matter: chunks, reversed and 2-D layouts agree per position.
    chunked = np.concatenate([sample_languages(q, 3, chunk) for chunk in np.array_split(positions, 7)])
    np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_array_equal(sample_languages(q, 3, positions[::-1])[::-1], whole)
    np.testing.assert_array_equal(sample_languages(q, 3, positions.reshape(50, 100)).ravel(), whole)
    assert sample_languages(q, 3, 1234) == whole[1234]
    assert np.mean(sample_languages(q, 4, positions) != whole) > 0.3


def test_zero_probability_language_is_never_drawn():
    q = temperature_probs({"en": 5, "fr": 0, "hi": 5, "ar": 0}, 0.3)
    draws = sample_languages(q, 0, np.arange(20_000))
    assert set(np.unique(draws).tolist()) == {0, 2}


def test_invalid_probabilities_rejected():
    with pytest.raises(ValueError, match="probability"):
        sample_languages(np.array([0.5, 0.2]), 0, np.arange(3))
