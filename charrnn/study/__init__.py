"""Part II: runs compared on held-out text, and the evidence drawn from them. Modules:
    evidence     a run's scores on the validation and test halves, the stopping rule, the mixture with the n-gram
    ngram        the interpolated Kneser-Ney character n-gram baseline
    journal      the journal of planned runs in runs/, read by the watcher of `make report`
    progress     live progress bars while waiting for runs trained elsewhere, fed by their checkpoints
    cache        the run cache in runs/: a run's key and file; load a finished run or train it here
    memo         numbers derived from finished runs and texts, kept in runs/derived/ for the next render
    scheduler    the background workers: queuing runs and jobs, and waiting for them (`cached_run`)
    experiments  Part II's settings: learning-rate sweeps, seeds, the run trained until it stops improving
    stats        differences from the reference with simultaneous 95% intervals (Dunnett, Welch), verdicts, power
    findings     Part II's findings as rows and words: differences, power, the test-half table, saturation
    rise         why an in-order run's held-out curve rises and falls: the play it was reading
"""
from charrnn.study import evidence, experiments, findings, rise, stats
from charrnn.study.cache import NUMERICS_VERSION, load_or_train, run_key
from charrnn.study.ngram import KneserNey, kneser_ney_scores
from charrnn.study.scheduler import cached_run, prefetch
