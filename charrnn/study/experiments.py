"""Part II's runs: each setting's learning-rate sweep, its seeds at the winning rate, the run trained to convergence.

A setting changes one thing of the reference (AdaGrad, sequential order, B = 1, m = 100). Each is
trained at every rate of its grid with the first seed, its rate is the one with the lowest
validation score (`evidence.half_scores`: final parameters, the validation half of the held-out
blocks; a winner at an end of the grid makes it grow, see `tune`), and the other seeds are trained
at that rate; the first seed's run at that rate is one of the seeds. Mini-batch settings see the same characters: updates / B updates. The
best setting is then continued, from its first seed's run, until `evidence.stopped_improving`
(`start_converge`: a background job that starts when the sweeps are done).
Jobs run in the background workers of `scheduler`; calling the same functions in the notebook waits
for them (a progress bar follows their runs in the run cache), then loads what they trained (or
trains it, when nothing was started in the background).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from charrnn.training.config import Config
from charrnn.study.evidence import STOP_PASSES, curve_bits, half_scores, stopped_improving
from charrnn.study.cache import load_or_train, run_key, run_path, run_updates
from charrnn.study.progress import job_done, updates_of, wait_showing
from charrnn.study.scheduler import submit_job
from charrnn.training.schedule import target_updates, updates_per_epoch
from charrnn.training.loop import TrainingDiverged

# Three rates per setting, a factor 2 apart around the rates that win on the default corpus (higher
# AdaGrad rates lose there by a quarter of a bit or more); a winner at an end of its grid still grows
# the grid (EXTEND), so a corpus that wants another rate gets it.
ADAGRAD_RATES = (0.025, 0.05, 0.1)
ADAM_RATES = (0.0005, 0.001, 0.002)
EVALS_PER_RUN = 10  # held-out evaluations in a comparison run (plus the one at update 0)
CONVERGE_CAP = 30  # the converged run stops at this many times the comparison budget at the latest
EXTEND = 2  # a tuned rate at an end of the rates tried: the grid grows beyond it at most this many times

# name: (the change to the reference, its learning-rate grid); the first is the reference itself
SETTINGS = {
    "reference": ({}, ADAGRAD_RATES),
    "Adam": ({"optimizer": "adam"}, ADAM_RATES),
    "random locations": ({"order": "random"}, ADAGRAD_RATES),
    "shuffled chunks": ({"order": "chunks"}, ADAGRAD_RATES),
    "B = 8": ({"batch_size": 8}, ADAGRAD_RATES),
    "B = 32": ({"batch_size": 32}, ADAGRAD_RATES),
    "m = 50": ({"m": 50}, (0.05, 0.1, 0.2)),
    "m = 200": ({"m": 200}, (0.0125, 0.025, 0.05)),
}
# relative cost per character (batch-1 AdaGrad at m = 100 is 1), to start the longest jobs first
_COST = {"Adam": 1.2, "B = 8": 0.8, "B = 32": 0.75, "m = 50": 0.35, "m = 200": 2.2}


def settings_for(reference: Config, updates: int, seeds: int, evals: int = EVALS_PER_RUN) -> dict:
    """{setting: {"configs": [Config at each rate, first seed], "rates": (...), "seeds": [...], "evals": n}}.
    `reference`: the reference settings with holdout; `updates`: the budget of a batch-1 run;
    `evals`: held-out evaluations per run (after the one at update 0)."""
    out = {}
    for name, (change, rates) in SETTINGS.items():
        B = change.get("batch_size", 1)
        base = reference.replace(**change, max_updates=updates // B,
                                 eval_every=max(1, updates // evals // B))
        out[name] = {"configs": [base.replace(eta=r) for r in rates], "rates": rates,
                     "seeds": list(range(reference.seed, reference.seed + seeds)), "evals": evals}
    return out


def _marker(corpus, config: Config, runs_dir) -> Path:
    return Path(runs_dir) / f"{run_key(corpus, config)}-u{config.max_updates}.diverged"


def _run_or_none(corpus, config: Config, runs_dir, progress=False):
    """The cached run, or None when it diverges (remembered in a marker file, so it is not retried)."""
    marker = _marker(corpus, config, runs_dir)
    if marker.exists():
        return None
    try:
        return load_or_train(corpus, config, runs_dir, progress=progress)
    except TrainingDiverged as exc:
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        marker.write_text(str(exc) + "\n")
        return None


def tune(corpus, setting: dict, runs_dir="runs", progress=False) -> dict:
    """Sweep the rates at the first seed, then the other seeds at the winner.

    When the winner is at an end of the rates tried, the grid grows by one rate beyond it (half the
    lowest, twice the highest), up to EXTEND times; so a tuned rate is inside the rates tried
    unless the extensions ran out ("edge"). Scores are the validation half's (`_score`: final
    parameters). Returns {"sweep": {rate: score, inf if diverged}, "eta": winning rate, "edge":
    whether it is at an end of the rates tried, "runs": [Run per seed], "scores": [validation score
    per seed], "test": [test score per seed] (bits per character)}."""
    sweep, sweep_runs, configs = {}, {}, {}
    todo = list(setting["configs"])
    for extension in range(EXTEND + 1):
        for c in todo:
            run = _run_or_none(corpus, c.replace(seed=setting["seeds"][0]), runs_dir, progress)
            sweep[c.eta] = _score(corpus, run, runs_dir)
            sweep_runs[c.eta], configs[c.eta] = run, c
        eta = min(sweep, key=sweep.get)
        if eta == min(sweep) and extension < EXTEND:
            todo = [configs[eta].replace(eta=eta / 2)]
        elif eta == max(sweep) and extension < EXTEND:
            todo = [configs[eta].replace(eta=eta * 2)]
        else:
            break
    sweep = dict(sorted(sweep.items()))
    best = configs[eta]
    runs = [sweep_runs[eta]] + [_run_or_none(corpus, best.replace(seed=s), runs_dir, progress)
                                for s in setting["seeds"][1:]]
    return {"sweep": sweep, "eta": eta, "edge": eta in (min(sweep), max(sweep)), "config": best,
            "sweep_runs": dict(sorted(sweep_runs.items())), "runs": runs,
            "scores": [_score(corpus, r, runs_dir) for r in runs], "test": [_score(corpus, r, runs_dir, "test") for r in runs]}


_HELD: dict = {}  # (corpus hash, held-out fraction) -> the held-out blocks


def _score(corpus, run, runs_dir, half: str = "validation") -> float:
    """The run's score on one half of the held-out blocks (its final parameters: `evidence.half_scores`,
    kept in runs_dir/derived); inf for a run that diverged (None)."""
    if run is None:
        return float("inf")
    key = (corpus.sha256, run.config.holdout)
    if key not in _HELD:
        _HELD[key] = corpus.split(run.config.holdout)[1]
    return half_scores(run, _HELD[key], runs_dir)[half]


def _tune_job(corpus, setting: dict, runs_dir: str) -> float:
    return tune(corpus, setting, runs_dir)["eta"]


_JOBS: dict = {}  # (runs_dir, name) -> Future of a background job


def start(corpus, settings: dict, runs_dir="runs", workers: int = 2) -> list:
    """Start every setting's tuning job in the background workers, the costliest first."""
    order = sorted(settings, key=lambda n: -_COST.get(n, 1.0))
    for name in order:
        if (str(runs_dir), name) not in _JOBS:
            _JOBS[(str(runs_dir), name)] = submit_job(_tune_job, corpus, settings[name], str(runs_dir),
                                                      workers=workers)
    return order


def _wait(keys, source, desc: str, progress) -> None:
    """Wait for the background jobs of `keys` in _JOBS, with a progress bar; `source()` builds the
    bar's source (only when there is something to wait for). Re-raises a failure of a job."""
    jobs = [_JOBS[k] for k in keys if k in _JOBS]
    if jobs:
        wait_showing(job_done(jobs), source(), desc, progress)
    for k in keys:
        job = _JOBS.get(k)
        if job is not None and job.done():
            del _JOBS[k]
            if not isinstance(job.exception(), KeyboardInterrupt):  # a run an interrupt stopped resumes here
                job.result()  # re-raises a failure of the job


def _sweeps_in_cache(corpus, settings: dict, runs_dir):
    """The progress bar's source while the tuning jobs train: the updates, in the run cache, of
    every run they may train (each rate of a grid and those it may grow to, at every seed), out of
    those of the runs they train when no grid grows."""
    hashed = SimpleNamespace(sha256=corpus.sha256)  # run_key reads only the corpus's hash: computed once
    runs, total = [], 0
    for s in settings.values():
        first = s["configs"][0]
        target = target_updates(first.epochs, first.max_updates, updates_per_epoch(corpus, first))
        rates = [c.eta for c in s["configs"]]
        grown = range(1, EXTEND + 1)
        rates += [min(rates) / 2 ** k for k in grown] + [max(rates) * 2 ** k for k in grown]
        runs += [(run_path(hashed, first.replace(eta=r, seed=seed), runs_dir), target)
                 for r in rates for seed in s["seeds"]]
        total += (len(s["configs"]) + len(s["seeds"]) - 1) * target
    return updates_of(runs, total)


def results(corpus, settings: dict, runs_dir="runs", progress=None) -> dict:
    """{setting: `tune` result}, once the background jobs of `start` are done (a progress bar
    follows their runs in the run cache), training here what is missing."""
    _wait([(str(runs_dir), name) for name in settings], lambda: _sweeps_in_cache(corpus, settings, runs_dir),
          "Part II: sweeps and seeds (in the background)", progress)
    return {name: tune(corpus, setting, runs_dir, progress) for name, setting in settings.items()}


def converge(corpus, config: Config, runs_dir="runs", progress=False):
    """`config`'s run continued, one comparison budget (config.max_updates) at a time, until its
    held-out score stops improving (`evidence.stopped_improving` over the updates of STOP_PASSES
    passes over the training text, not before twice the budget) or CONVERGE_CAP budgets are done.
    Returns (Run, whether it stopped by the rule)."""
    step = config.max_updates
    for k in range(2, CONVERGE_CAP + 1):
        run = load_or_train(corpus, config.replace(max_updates=k * step), runs_dir, progress=progress)
        updates, bits = curve_bits(run)
        if stopped_improving(updates, bits, stop_window(run), min_updates=2 * step):
            return run, True
    return run, False


def stop_window(run) -> int:
    """The stopping rule's window in updates of `run`: STOP_PASSES passes over its training text."""
    return STOP_PASSES * run.updates_per_epoch


def _converge_best_job(corpus, settings: dict, runs_dir: str) -> int:
    res = results(corpus, settings, runs_dir, progress=False)  # in a worker: no jobs of its own to wait for
    return converge(corpus, res[best_setting(res)]["config"], runs_dir)[0].update


def start_converge(corpus, settings: dict, runs_dir="runs", workers: int = 2) -> None:
    """Start, in the background workers, a job that picks the best of `settings` (their `tune`
    results, from the cached runs) and runs `converge` on it. Submitted after `start`, it is taken
    by a worker once every tuning job has been taken, so it starts when the sweeps are done (a run
    still training elsewhere is waited for), while the notebook goes on."""
    key = (str(runs_dir), "converge")
    if key not in _JOBS:
        _JOBS[key] = submit_job(_converge_best_job, corpus, settings, str(runs_dir), workers=workers)


def converged(corpus, config: Config, runs_dir="runs", progress=None):
    """`converge`'s result, once its background job, if one was started, is done (a progress bar
    follows the run in the run cache, up to its next check of the stopping rule)."""
    path, step = run_path(corpus, config, runs_dir), config.max_updates
    cap = CONVERGE_CAP * step

    def source():
        done = min(run_updates(path), cap)
        return done, min(cap, (done // step + 1) * step)

    _wait([(str(runs_dir), "converge")], lambda: source,
          f"{path.stem}: trained until it stops improving (in the background)", progress)
    return converge(corpus, config, runs_dir, progress)


def best_setting(res: dict) -> str:
    """The setting with the lowest mean score over its seeds."""
    return min(res, key=lambda n: float(np.mean(res[n]["scores"])))


def budget(res: dict) -> dict:
    """Runs, characters read and training seconds of every run in `res` (sweeps and seeds)."""
    runs = {id(r): r for v in res.values() for r in [*v["sweep_runs"].values(), *v["runs"]] if r is not None}
    diverged = sum(r is None for v in res.values() for r in v["sweep_runs"].values())
    return {"runs": len(runs), "diverged": diverged,
            "characters": sum(r.update * r.config.seq_length * r.config.batch_size for r in runs.values()),
            "seconds": sum(r.seconds for r in runs.values())}


def edge_note(res: dict, names) -> str:
    """A sentence naming the settings in `names` whose winning rate is at an end of its rate grid
    (a rate beyond the grid might serve them better); "" when none is."""
    ends = {}
    for n in dict.fromkeys(names):
        if res[n].get("edge"):
            end = "low" if res[n]["eta"] == min(res[n]["sweep"]) else "high"
            ends.setdefault(end, []).append("the reference" if n == "reference" else n)
    notes = []
    for end, who in ends.items():
        change = "smaller" if end == "low" else "larger"
        if len(who) == 1:
            notes.append(f"The tuned rate of {who[0]} is at the {end} end of its rate grid, so a {change} rate "
                         "might serve it better.")
        else:
            notes.append(f"The tuned rates of {' and '.join(who)} are at the {end} end of their rate grids, so "
                         f"{change} rates might serve them better.")
    return " ".join(notes)
