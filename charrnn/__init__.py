"""charrnn: everything around the assignment's code (`rnn_core.py`): training runs, compiled kernels,
Part II's study and the report. Four wings, each importing only the ones before it:

    rnn_core   (top-level module) the model, BPTT, the optimisers, the gradient check, sampling
    kernels    the compiled (numba) training loop and held-out evaluation, behind one seam
    training   corpus, configuration, schedule, the training loop, checkpoints and their validation
    study      Part II: the held-out evidence, the run cache and its background runs, the n-gram baseline
    report     figures, tables, captions, the notebook's prose, rendering to HTML and PDF, the watcher
    cli        the command line (`python -m charrnn`), above them all
"""
