"""charrnn: the implementation behind `rnn_core` (import that module; this package holds its parts).

    data   corpus loading, the sorted vocabulary, the default public-domain corpus
    model  parameters, forward/backward (textbook and vectorised), gradient check, sampler
    optim  AdaGrad and Adam with explicit state, gradient clipping
    kernel the fused numba training kernel
    ngram  the interpolated Kneser-Ney n-gram baseline
    analysis  hidden units and next-character candidates of a trained network
    plots  figures and tables for the report
    train  config, training loop (orders, mini-batches, validation), checkpoints, run cache
    cli    `python -m rnn_core ...`
"""
