"""The run cache and its scheduler: an interrupted run is saved and never returned partial; every
wait for a run trained elsewhere shows a progress bar fed by the run's checkpoints, quiet under
RNN_PROGRESS=0."""
import concurrent.futures as cf
import os
import signal
import threading

import pytest

from charrnn import study, training
from charrnn.study import cache, experiments, progress, scheduler
from test_train import assert_runs_equal
from rnn_core import RNNError


def small(**kw):
    base = dict(m=8, seq_length=10, epochs=1, max_updates=60, sample_every=0, backend="numpy")
    return training.Config(**{**base, **kw})


def test_an_interrupted_run_is_saved_and_raises_instead_of_returning_partial(corpus, tmp_path, monkeypatch):
    """Bug 3 of issue 18: SIGINT (a notebook's interrupt) while `cached_run` trains here returned the
    run unfinished, and the notebook plotted it. It saves the checkpoint and raises KeyboardInterrupt;
    the next call resumes the run bit for bit."""
    c = small(max_updates=40)
    real_train = cache.train

    def interrupted(*args, **kw):  # SIGINT to this process at update 15, as Ctrl-C would send it
        return real_train(*args, **kw, callback=lambda run: run.update == 15 and os.kill(os.getpid(), signal.SIGINT))

    monkeypatch.setattr(cache, "train", interrupted)
    with pytest.raises(KeyboardInterrupt, match="SIGINT"):
        study.cached_run(corpus, c, runs_dir=tmp_path, progress=False)
    path = cache.run_path(corpus, c, tmp_path)
    assert progress.checkpoint_updates(path) == 15  # saved where it stopped
    monkeypatch.undo()
    resumed = study.cached_run(corpus, c, runs_dir=tmp_path, progress=False)
    assert resumed.finished
    assert_runs_equal(resumed, training.train(corpus, c, progress=False))


def test_the_bars_source_reads_the_updates_of_a_checkpoint_being_written(corpus, tmp_path):
    c = small(max_updates=40, checkpoint_seconds=0.0)  # saved after every update
    path = cache.run_path(corpus, c, tmp_path)
    assert progress.checkpoint_updates(path) == 0 and cache.run_updates(path) == 0  # nothing yet
    at_20, go_on = threading.Event(), threading.Event()

    def pause(run):
        if run.update == 20:
            at_20.set()
            go_on.wait(30)

    trainer = threading.Thread(target=training.train, args=(corpus, c),
                               kwargs=dict(checkpoint=path, progress=False, callback=pause))
    trainer.start()
    try:
        assert at_20.wait(60)
        assert progress.checkpoint_updates(path) == 19  # the last save, before update 20's
        assert cache.run_updates(cache.run_path(corpus, c.replace(max_updates=80), tmp_path)) == 19  # same key
        source = progress.updates_of([(path, 40)], total=100)
        assert source() == (19, 100)
    finally:
        go_on.set()
        trainer.join(60)
    assert progress.updates_of([(path, 30)], total=10)() == (30, 30)  # at most the target; total grows


def _waits(until_calls: int):
    calls = []

    def until(timeout):
        calls.append(timeout)
        return len(calls) > until_calls

    return until


def test_a_wait_shows_a_bar_and_is_quiet_under_rnn_progress_0(capsys, monkeypatch):
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.0)
    monkeypatch.delenv("RNN_PROGRESS", raising=False)
    progress.wait_showing(_waits(2), lambda: (30, 60), "some run (in the background)")
    err = capsys.readouterr().err
    assert "some run (in the background)" in err and "30/60" in err
    monkeypatch.setenv("RNN_PROGRESS", "0")  # as `make report` sets it
    progress.wait_showing(_waits(2), lambda: (30, 60), "some run (in the background)")
    assert capsys.readouterr().err == ""
    progress.wait_showing(_waits(0), lambda: (30, 60), "done already", progress=True)  # nothing to wait for
    assert capsys.readouterr().err == ""


def test_cached_run_waits_for_its_background_job_with_a_bar(corpus, tmp_path, capsys, monkeypatch):
    """A run `prefetch` queued is waited for with a bar of its checkpoint's updates (here the job is
    a Future that a thread completes once the run is in the cache)."""
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.1)
    c = small()
    trained = training.train(corpus, c, checkpoint=cache.run_path(corpus, c, tmp_path), progress=False)
    job = cf.Future()
    path = str(cache.run_path(corpus, c, tmp_path))
    monkeypatch.setitem(scheduler._PENDING, path, job)
    threading.Timer(0.5, job.set_result, [None]).start()
    run = scheduler.cached_run(corpus, c, runs_dir=tmp_path, progress=True)
    assert_runs_equal(run, trained)
    assert path not in scheduler._PENDING
    err = capsys.readouterr().err
    assert "(in the background)" in err and "60/60" in err
    failed = cf.Future()
    failed.set_exception(RuntimeError("the worker failed"))
    monkeypatch.setitem(scheduler._PENDING, path, failed)
    with pytest.raises(RuntimeError, match="the worker failed"):  # a job's failure reaches the notebook
        scheduler.cached_run(corpus, c, runs_dir=tmp_path, progress=False)
    stopped = cf.Future()  # an interrupt (which reaches the workers too) stopped the job: its run,
    stopped.set_exception(KeyboardInterrupt("SIGINT stopped the run"))  # saved, is resumed here
    monkeypatch.setitem(scheduler._PENDING, path, stopped)
    assert_runs_equal(scheduler.cached_run(corpus, c, runs_dir=tmp_path, progress=False), trained)


def test_results_wait_for_the_tuning_jobs_with_a_bar_of_their_runs(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.1)
    ref = training.Config(m=6, seq_length=10, holdout=0.2, epochs=10**6, sample_every=0, seed=3, backend="numpy")
    settings = {"reference": experiments.settings_for(ref, updates=60, seeds=2)["reference"]}
    job = cf.Future()
    monkeypatch.setitem(experiments._JOBS, (str(tmp_path), "reference"), job)
    experiments.tune(corpus, settings["reference"], tmp_path)  # what the job trains

    threading.Timer(0.5, job.set_result, [None]).start()
    res = experiments.results(corpus, settings, tmp_path, progress=True)
    assert (str(tmp_path), "reference") not in experiments._JOBS
    done, total = experiments._sweeps_in_cache(corpus, settings, tmp_path)()
    assert done == total >= 4 * 60  # 3 rates and 1 more seed, at least
    assert "Part II" in capsys.readouterr().err
    assert res["reference"]["eta"] in res["reference"]["sweep"]


@pytest.mark.parametrize("call, message", [
    (lambda c, d: study.cached_run(c, {"m": 8}, runs_dir=d), "config must be a training.Config, got dict"),
    (lambda c, d: study.cached_run(c, training.Config(), runs_dir=None), "runs_dir must name a folder, got None"),
    (lambda c, d: study.cached_run("text", training.Config(), runs_dir=d), "corpus must be a Corpus"),
    (lambda c, d: study.load_or_train(c, None, runs_dir=d), "config must be a training.Config, got NoneType"),
    (lambda c, d: study.prefetch(c, [[training.Config(), "x"]], runs_dir=d), "config must be a training.Config, got str"),
])
def test_the_run_cache_refuses_nonsense_arguments_in_one_line(corpus, tmp_path, call, message):
    with pytest.raises(RNNError, match=message):
        call(corpus, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written, nothing started
