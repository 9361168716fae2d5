"""charrnn: the implementation behind `rnn_core` (import that module; this package holds its parts).

    data   corpus loading, the sorted vocabulary, the default public-domain corpus
    model  parameters, forward/backward (textbook and vectorised), gradient check, sampler
    optim  AdaGrad with explicit state, gradient clipping
    train  config, training loop, checkpoints, run cache
    cli    `python -m rnn_core ...`
"""
