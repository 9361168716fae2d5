"""Training runs: what a run is, how it is trained, saved and read back. Modules:
    data        the corpus, its sorted vocabulary, the default public-domain corpus
    heldout     which characters are held out (blocks spread over the corpus) and scoring them
    config      the Config dataclass (one comment per field), its checks, what a resumed run may change
    schedule    stream lengths, updates per epoch, epoch plans, when a run is done
    run         the state of a run (Run) and a new run
    loop        the training loop (orders, mini-batches, samples, held-out checks, stopping)
    checkpoint  save and load a run as one .npz, atomically, one writer at a time
    validate    read a checkpoint safely and check every member and field before use
    gradcheck   the report's gradient check on a corpus (settings, bounds, tolerances)
"""
from charrnn.training.checkpoint import load_checkpoint, save_checkpoint
from charrnn.training.config import Config, check_resume_config, resolve_backend
from charrnn.training.data import (DEFAULT_CORPUS, Corpus, CorpusError, Vocab, build_default_corpus,
                                   corpus_from_text, load_corpus, open_corpus)
from charrnn.training.gradcheck import gradcheck_on_text
from charrnn.training.run import Run, check_corpus, first_stream_state, new_run, random_streams
from charrnn.training.schedule import epoch_plan, split_data, stream_length, target_updates, updates_per_epoch
from charrnn.training.loop import TrainingDiverged, train
