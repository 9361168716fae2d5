"""charrnn: the implementation behind `rnn_core` (import that module; this package holds its parts).

    data   corpus loading, the sorted vocabulary, the default public-domain corpus
    model  parameters, forward/backward in three forms (textbook, vectorised, mini-batch), held-out loss
    gradcheck  BPTT against centred finite differences
    sampling   temperature and top-p sampling, priming, streaming
    optim  AdaGrad and Adam with explicit state, gradient clipping
    kernel the fused numba training kernel
    ngram  the interpolated Kneser-Ney n-gram baseline
    analysis  hidden units and next-character candidates of a trained network
    plots  figures and tables for the report
    captions  numbered figures, tables and framed passages in the notebook, with captions
    render    the executed notebook to HTML and to PDF (pandoc's typst writer, typst)
    watch     the training progress on the terminal of `make report`
    speed     a short timing of the training forms, for the report's appendix
    config     the Config dataclass, its checks, what a resumed run may change
    schedule   held-out split, stream lengths, updates per epoch, epoch plans, when a run is done
    run        the state of a run (Run) and a new run
    train      the training loop (orders, mini-batches, samples, held-out checks, stopping)
    checkpoint save and load a run as one .npz; one writer per checkpoint (a lock)
    validate   read a checkpoint safely and check every member and meta field before use
    runcache   the run cache in runs/ and its background workers
    cli    `python -m rnn_core ...`
"""
