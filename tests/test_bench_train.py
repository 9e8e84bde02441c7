"""`python -m xlt_jax.bench train`: its layer variants ("both" once ran one unrolled variant labelled "both") and
its memory-stream measurement."""

from __future__ import annotations

import argparse

import jax
import pytest

from xlt_jax.bench import train
from xlt_jax.bench.train import layer_variants


@pytest.mark.parametrize(
    "spec, want",
    [("both", ["scan", "unrolled"]), ("scan,unrolled", ["scan", "unrolled"]), ("scan", ["scan"]),
     ("unrolled", ["unrolled"])],
)
def test_layer_variants(spec, want):
    assert layer_variants(spec) == want


@pytest.mark.parametrize("spec", ["", "scanned", "scan,both"])
def test_unknown_layer_variants_are_refused(spec):
    with pytest.raises(argparse.ArgumentTypeError, match="scan, unrolled, both"):
        layer_variants(spec)


def test_stream_bandwidth_counts_the_bytes_read_and_written_over_the_best_call(monkeypatch):
    calls = []

    def fake_timed_calls(fn, repeats):
        fn()  # the pass itself must run
        calls.append(repeats)
        return [0.5, 0.25, 1.0][:repeats]

    monkeypatch.setattr(train, "timed_calls", fake_timed_calls)
    bytes_per_s = train.stream_bandwidth(jax.devices()[0], mib=4, repeats=3)
    assert calls == [3]
    assert bytes_per_s == 2 * 4 * 2**20 / 0.25  # 4 MiB read + 4 MiB written in the best (0.25 s) call
