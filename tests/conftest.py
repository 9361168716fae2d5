import numpy as np
import pytest

import rnn_core as rc
from charrnn import training

# A short public-domain English text (first lines of the US Declaration of Independence, 1776),
# repeated: enough variety for the gradient checks and the training tests.
TEXT = (
    "When in the Course of human events, it becomes necessary for one people to dissolve the "
    "political bands which have connected them with another, and to assume among the powers of "
    "the earth, the separate and equal station to which the Laws of Nature and of Nature's God "
    "entitle them, a decent respect to the opinions of mankind requires that they should declare "
    "the causes which impel them to the separation.\n"
)


@pytest.fixture
def corpus():
    return training.corpus_from_text(TEXT * 3, seq_length=25)


@pytest.fixture
def corpus_file(tmp_path):
    p = tmp_path / "small.txt"
    p.write_text(TEXT * 3, encoding="utf-8")
    return p


def random_params(K, m, seed, sig):
    """Weights and biases all N(0, sig^2): every gradient entry is exercised."""
    rng = np.random.default_rng(seed)
    params = rc.init_params(K, m, rng, sig)
    params["b"] = rng.standard_normal(m) * sig
    params["c"] = rng.standard_normal(K) * sig
    return params
