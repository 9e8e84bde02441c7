"""`python -m xlt_jax.bench peer` runs each configuration in a process of its own with the same options."""

from __future__ import annotations

from xlt_jax.bench import peer


def test_a_child_process_gets_one_configuration_and_every_other_option():
    argv = ["--layers", "unrolled", "--configs", "roberta8_8x128,roberta8_8x512", "--rounds", "5", "--isolate"]
    assert peer.child_argv("roberta8_8x512", argv) == [
        "--layers", "unrolled", "--rounds", "5", "--configs", "roberta8_8x512", "--no-isolate",
    ]  # fmt: skip
    assert peer.child_argv("small_translit_128x64", ["--configs=a,b", "--steps", "3"]) == [
        "--steps", "3", "--configs", "small_translit_128x64", "--no-isolate",
    ]  # fmt: skip
