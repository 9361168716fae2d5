"""A short timing of the training forms while the report runs (its speed appendix): seconds each."""
from __future__ import annotations

import time

from charrnn.training.config import Config
from charrnn.training.loop import train


def time_forms(corpus, forms: dict, seconds: float = 1.0, m: int = 100, seq_length: int = 25) -> list:
    """Train each form ({label: Config changes, e.g. {"backend": "numpy"}}) from scratch for about
    `seconds` and measure its rate. Returns [(label, batch size, updates, seconds, updates/s)].

    Two short runs of each form come first: one to load (or compile) the kernel, if that is the form,
    one to find the rate; the timed run then does about `seconds` worth of updates."""
    rows = []
    for label, changes in forms.items():
        base = Config(m=m, seq_length=seq_length, sample_every=0, epochs=10**6, **changes)
        train(corpus, base.replace(max_updates=2), progress=False)
        probe, t0 = 100, time.perf_counter()
        train(corpus, base.replace(max_updates=probe), progress=False)
        rate = probe / max(time.perf_counter() - t0, 1e-6)
        updates = max(probe, int(rate * seconds))
        t0 = time.perf_counter()
        run = train(corpus, base.replace(max_updates=updates), progress=False)
        dt = time.perf_counter() - t0
        rows.append((label, base.batch_size, run.update, dt, run.update / dt))
    return rows
