"""Why an in-order run's held-out curve rises and falls: which play it was reading, and each play's held-out blocks."""
from __future__ import annotations

import re

import numpy as np

from charrnn.study.evidence import BITS
from charrnn.study.findings import join_names, signed
from charrnn.training.heldout import block_log_probs, heldout_starts
from charrnn.training.run import first_stream_state


def play_titles(text: str) -> list:
    """(character, title) of each play of a corpus whose plays open with 'TITLE\\n\\nby William
    Shakespeare'; empty for another corpus."""
    out = []
    for m in re.finditer(r"by William Shakespeare", text):
        before = text[max(0, m.start() - 80):m.start()].strip().split("\n")
        out.append((m.start(), _title(before[-1]) if before else "?"))
    return out


def _title(line: str) -> str:
    """A title line in capitals as a short title, for narrow table columns: "A MIDSUMMER NIGHT'S DREAM"
    -> "A Midsummer Night's Dream", "HAMLET, PRINCE OF DENMARK" -> "Hamlet" (the name before a comma or
    semicolon), "THE TRAGEDY OF KING LEAR" -> "King Lear"."""
    small = {"of", "the", "and", "or", "a", "in"}
    line = re.split(r"[,;]", line.strip())[0]
    line = re.sub(r"^the tragedy of ", "", line, flags=re.I)
    words = line.lower().split()
    return " ".join(w if i and w in small else w[:1].upper() + w[1:] for i, w in enumerate(words))


def play_at(titles: list, position: int) -> str:
    """The title of the play holding character `position` ("front matter" before the first)."""
    name = "front matter"
    for start, title in titles:
        if start <= position:
            name = title
    return name


def reading_rows(train_text: str, updates, seq_length: int) -> list:
    """For an in-order batch-1 run: at each update of `updates`, the pass and the play it was reading."""
    titles = play_titles(train_text)
    N = len(train_text)
    return [[f"{u:,}", f"{u * seq_length // N + 1}", play_at(titles, u * seq_length % N)] for u in updates]


def rise_rows(runs_by_update: dict, held: np.ndarray, text: str, fraction: float) -> tuple[list, list]:
    """Each in-order run of `runs_by_update` ({update: Run}, one seed) on the held-out blocks of each
    play: (header, rows of play, blocks, bits at each update); `text` is the whole corpus."""
    L, starts = heldout_starts(len(text), fraction)
    titles = play_titles(text)
    plays = [play_at(titles, int(s)) for s in starts]
    per_block = {u: -block_log_probs(r.params, held, first_stream_state(r)).mean(axis=1) * BITS
                 for u, r in runs_by_update.items()}
    rows = []
    for p in dict.fromkeys(plays):
        idx = [i for i, q in enumerate(plays) if q == p]
        rows.append([p, str(len(idx))] + [f"{per_block[u][idx].mean():.3f}" for u in runs_by_update])
    rows.append(["all blocks", str(len(plays))] + [f"{v.mean():.3f}" for v in per_block.values()])
    return ["play", "blocks"] + [f"update {u:,}" for u in runs_by_update], rows


def plays_read(train_text: str, seq_length: int, u0: int, u1: int) -> list:
    """The plays an in-order batch-1 run read between updates u0 and u1, in reading order."""
    titles, N = play_titles(train_text), len(train_text)
    step = max(1, (u1 - u0) // 200)
    return list(dict.fromkeys(play_at(titles, u * seq_length % N) for u in range(u0, u1 + 1, step)))


def _change_sentence(rows: list, i: int, j: int, u0: int, u1: int, read: list) -> str:
    """Between columns i and j of `rise_rows`' rows (updates u0 and u1): the plays read, the change
    on all blocks, the play whose blocks fell most and those whose blocks rose by more than 0.05 bits."""
    change = {r[0]: float(r[j]) - float(r[i]) for r in rows[:-1]}
    worse = sorted((p for p in change if change[p] > 0.05), key=change.get, reverse=True)
    best = min(change, key=change.get)
    text = (f"Between updates {u0:,} and {u1:,} the in-order run read {join_names(read)}, and its held-out loss on all "
            f"blocks changed by {signed(float(rows[-1][j]) - float(rows[-1][i]))} bits: on the blocks of {best} by "
            f"{signed(change[best])}")
    if worse:
        text += ", on those of " + ", ".join(f"{p} by {signed(change[p])}" for p in worse)
    return text + ". "


def rise_text(header: list, rows: list, updates: list, train_text: str, seq_length: int) -> str:
    """What the table of `rise_rows` shows: which plays' blocks got worse and better over the first
    and over the last two of `updates` (columns 2.. of the rows), and which plays the run read then."""
    text = _change_sentence(rows, 2, 3, updates[0], updates[1],
                            plays_read(train_text, seq_length, updates[0], updates[1]))
    if len(updates) > 3:
        k = len(updates) - 1
        text += _change_sentence(rows, k + 1, k + 2, updates[k - 1], updates[k],
                                 plays_read(train_text, seq_length, updates[k - 1], updates[k]))
    return text + ("The numbers fit one reading, from one seed and two rises (an explanation, not a controlled test): a "
                   "network reading the text in order fits the play it is reading (its names, its speakers' tags, its "
                   "words) at the expense of the others, so its held-out curve moves with where it stands in the "
                   "text; runs reading random locations, shuffled chunks or several streams at once see every play "
                   "all the time and their curves never rise. Either way, every run is scored on "
                   "its final parameters, after the same characters: all seeds of an in-order setting then stand at "
                   f"the same place in the text. That place is part of what is compared, though: the in-order settings "
                   f"are scored where the budget leaves them, reading {join_names(plays_read(train_text, seq_length, updates[-1] - 1, updates[-1]))}, "
                   "and part of their difference from the other orders is that place.")


def rise_count_rows(res: dict) -> list:
    """Per setting: the seeds whose held-out curve (all blocks) rises between two consecutive
    evaluations, and at each evaluation where some seed's curve rises, how many and by how much."""
    rows = []
    for n, r in res.items():
        runs = [x for x in r["runs"] if x is not None]
        k = min(len(x.val_losses) for x in runs)
        D = np.diff(np.stack([np.asarray(x.val_losses[1:k]) * BITS for x in runs]), axis=1)  # (seeds, evals - 2)
        up = D > 0
        where = ", ".join(f"{runs[0].val_updates[j + 2]:,}: {int(up[:, j].sum())} ({signed(D[up[:, j], j].mean())})"
                          for j in range(D.shape[1]) if up[:, j].any())
        rows.append([n, f"{int(up.any(axis=1).sum())} of {len(runs)}", where or "none"])
    return rows


RISE_COUNT_HEADER = ["setting", "seeds whose curve ever rises", "update: seeds rising there (their mean rise, bits)"]
