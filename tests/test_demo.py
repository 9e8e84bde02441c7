"""`make demo` shows the training loops' progress lines (stdlib `logging.info` in training/loop.py) and drops
Orbax's per-checkpoint INFO chatter."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_demo_logging_shows_progress_lines_and_drops_orbax_chatter():
    script = textwrap.dedent("""
        import logging
        from xlt_jax import demo
        demo.show_progress_lines()
        logging.getLogger("xlt_jax.training.loop").info("step 100/2400 loss 6.1 ETA 9m")
        orbax = logging.LogRecord("absl", logging.INFO, "/site-packages/orbax/checkpoint/x.py", 1,
                                  "Saving checkpoint", None, None)
        logging.getLogger("absl").handle(orbax)
        logging.getLogger("absl").warning("orbax warning kept")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "step 100/2400 loss 6.1 ETA 9m" in done.stderr
    assert "Saving checkpoint" not in done.stderr
    assert "orbax warning kept" in done.stderr


def test_a_rerun_with_nothing_left_to_run_keeps_the_record_of_the_run_that_computed_it(tmp_path, monkeypatch):
    """`make demo` twice: the second finds every step done; demo.json keeps the first run's wall time."""
    import json
    import types

    from xlt_jax import demo

    executed = [["pretrain/bilingual", "finetune/pos"], []]  # what the protocol ran, per invocation
    monkeypatch.setattr(demo, "data_steps", lambda *a: None)
    monkeypatch.setattr(demo, "show_progress_lines", lambda: None)
    monkeypatch.setattr(demo, "protocol", lambda config, workdir: types.SimpleNamespace(executed=executed.pop(0)))
    calls = iter(range(1, 3))  # each summary differs, so a rewritten record would show
    monkeypatch.setattr(demo, "summary", lambda workdir, config, seconds: {"BZ": 58.8, "summary": next(calls)})
    record = tmp_path / demo.RECORD_FILE

    demo.main(["--workdir", str(tmp_path)])
    first = json.loads(record.read_text())
    assert (first["BZ"], first["summary"], first["steps_run"]) == (58.8, 1, 2) and "wall_s" in first
    demo.main(["--workdir", str(tmp_path)])
    assert json.loads(record.read_text()) == first
