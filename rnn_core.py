"""A character-level vanilla RNN trained with backpropagation through time and AdaGrad.

This is the module the notebook imports. The code lives in the `charrnn` package, one file per
concern; everything a user needs is re-exported here, so `import rnn_core` is all it takes.

Dimension letters: T steps in a sequence, K characters in the vocabulary, m hidden units.

Command line: `python -m rnn_core train | sample | gradcheck | corpus` (each takes --help).
"""
if __name__ == "__main__":  # the command line needs none of the re-exports below, and starts faster without them
    import sys

    from charrnn.cli import main

    sys.exit(main())

from charrnn.analysis import (activations, distinct_word_ratio, pick_units, plot_activation_panels,
                              plot_top_candidates, text_features, top_candidates)
from charrnn.data import (DEFAULT_CORPUS, Corpus, CorpusError, RNNError, Vocab, build_default_corpus,
                          corpus_from_text, load_corpus, open_corpus)
from charrnn.gradcheck import gradcheck, gradcheck_on_text, numerical_grads, relative_error
from charrnn.model import (PARAM_NAMES, evaluate_loss, float32_values, init_params, loss_and_grads,
                           loss_and_grads_batch, loss_and_grads_steps, rnn_backward, rnn_backward_batch,
                           rnn_backward_steps, rnn_forward, rnn_forward_batch, rnn_forward_steps, softmax, step_backward,
                           step_forward, hidden_states)
from charrnn.sampling import SamplingError, sample_text, sampling_probs, synthesize
from charrnn.evidence import BITS
from charrnn.plots import (describe_vocab, gradcheck_table, known_word_fraction, markdown_table, plot_smooth_loss,
                           plot_text_panels, save_figure)
from charrnn.kernel import available as kernel_available, kernel_loss_and_grads
from charrnn import evidence, evidence_plots, heldout, study  # Part II's protocol, figures and runs
from charrnn.ngram import KneserNey
from charrnn.optim import adagrad_init, adagrad_step, adam_init, adam_step, clip_grads
from charrnn.captions import ref, show_figure, show_passage, show_table
from charrnn.checkpoint import load_checkpoint, save_checkpoint
from charrnn.config import Config, check_resume_config, resolve_backend
from charrnn.run import Run, check_corpus, first_stream_state, new_run, random_streams
from charrnn.runcache import NUMERICS_VERSION, cached_run, prefetch, run_key
from charrnn.speed import time_forms
from charrnn.schedule import epoch_plan, split_data, stream_length, target_updates, updates_per_epoch
from charrnn.train import TrainingDiverged, train

__all__ = [name for name in dir() if not name.startswith("_")]
