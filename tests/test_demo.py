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
