"""Part II: runs compared on held-out text, and the evidence drawn from them. Modules:
    evidence     a run's score, seed summaries, the verdict and stopping rules, the mixture with the n-gram
    ngram        the interpolated Kneser-Ney character n-gram baseline
    runcache     the run cache in runs/: load a run or train it, and the background workers
    experiments  Part II's settings: learning-rate sweeps, seeds, the run trained until it stops improving
"""
from charrnn.study import evidence, experiments
from charrnn.study.ngram import KneserNey
from charrnn.study.runcache import NUMERICS_VERSION, cached_run, prefetch, run_key
