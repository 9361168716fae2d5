"""The report's computed wording: setting names in math, true minus signs, counts in words, the
speaker-line detector, the verdicts' bullets and the rise sentence."""
from types import SimpleNamespace

import numpy as np

from charrnn.report import narrative
from charrnn.study import findings, stats

CORPUS = ("ACT I.\n\nSCENE I. A room.\n\nOTHELLO.\nWhat, ho!\n\nIAGO.\nMy lord.\n\n"
          "OTHELLO.\nA word.\n\nIAGO.\nAnother.\n\nFirst Lord.\nOnce.\n")


def test_a_setting_name_enters_markdown_with_its_symbol_in_math():
    assert findings.setting_md("B = 8") == "$B = 8$" == stats.setting_md("B=8")
    assert findings.setting_md("m = 200") == "$m = 200$"
    for words in ("reference", "shuffled chunks", "Adam", "top-p 0.5"):
        assert findings.setting_md(words) == words


def test_negative_numbers_carry_a_true_minus_sign():
    assert findings.signed(-0.08) == "\u22120.080" and findings.signed(0.005) == "+0.005"
    text = stats.verdict_text("shuffled chunks", -0.080, -0.165, 0.005)
    assert "(\u22120.080 bits, 95% interval \u22120.165 to +0.005)" in text and "-0." not in text
    assert stats.verdict_text("B = 8", -0.10, -0.15, -0.05).startswith("$B = 8$ better by 0.100 bits")


def test_counts_read_as_words():
    assert findings.of_total(50, 50, "epochs", every=True) == "every one of the 50 epochs"
    assert findings.of_total(28, 28, "blocks") == "all 28 blocks"
    assert findings.of_total(1, 8, "settings") == "one of the eight settings"
    assert findings.of_total(9, 32, "positions") == "9 of the 32 positions"
    assert findings.of_total(0, 6, "seeds") == "none of the six seeds"


def test_a_speaker_line_needs_a_speaker_of_the_corpus():
    speakers = narrative.corpus_speakers(CORPUS)
    assert {"OTHELLO", "IAGO"} <= speakers
    assert "ACT I" not in speakers and "First Lord" not in speakers  # a heading; a name met once
    # the shape of a speaker line is not enough: "WeouslldnouThout." is no name of the corpus
    assert narrative.speaker_lines("WeouslldnouThout.\nHe goes.\n", speakers) == 0
    assert narrative.speaker_lines("Ow the.\nIAGO.\nSo.\nOTHELLO.\n", speakers) == 2
    texts = ((0, "xq zv.\n"), (10_000, "WeouslldnouThout.\nWhat lord\n"), (20_000, "ORONI.\nMy lord\n"),
             (30_000, "IAGO.\nMy lord, ho\n"))
    samples = [{"update": u, "smooth_loss": 50.0, "text": t} for u, t in texts]
    # speaker tags, made up or real, and the real names among them
    assert [row[5] for row in narrative.sample_reading(samples, CORPUS)[1][:4]] == ["0 (0)", "0 (0)", "1 (0)", "1 (1)"]
    assert "first appears at update 30,000" in narrative.sample_reading_summary(samples, CORPUS)
    said = narrative.sample_reading_summary(samples[:3], CORPUS)
    assert "appear from update 20,000 on, but none names one of the corpus's speakers" in said


def _diffs(rows):
    return {"rows": [dict(name=n, lo=lo, hi=hi) for n, lo, hi in rows], "k": len(rows)}


def test_the_conclusions_verdicts_are_brief_and_computed():
    one = findings.conclusion_verdicts(_diffs([("Adam", -0.08, 0.09), ("m = 50", 0.003, 0.174), ("B = 8", -0.15, 0.02)]))
    assert one.startswith("- **Verdicts.** Of the three changes, only $m = 50$ (worse) differs detectably")
    assert "the intervals of the other two rule out differences above 0.150 bits" in one
    assert "($m = 50$: the interval's end nearest zero is +0.003 bits, a narrow call)" in one
    clear = findings.conclusion_verdicts(_diffs([("m = 50", 0.05, 0.174)]))
    assert "narrow" not in clear
    none = findings.conclusion_verdicts(_diffs([("Adam", -0.08, 0.09), ("B = 8", -0.15, 0.02)]))
    assert "none differs detectably" in none and "all of them rule out differences above 0.150" in none


def test_the_rise_sentence_names_settings_in_math_and_counts_all_seeds():
    def run(curve):
        return SimpleNamespace(val_losses=list(curve), val_updates=list(range(0, 1000 * len(curve), 1000)))
    falling, rising = [3.0, 2.5, 2.2, 2.0], [3.0, 2.5, 2.6, 2.4]
    res = {"reference": {"runs": [run(rising), run(rising)]}, "m = 50": {"runs": [run(rising), run(falling)]},
           "B = 8": {"runs": [run(falling), run(falling)]}}
    said = narrative.rise_count_text(res)
    assert said == ("Seeds whose held-out curve ever rises from one evaluation to the next: reference (all 2) and "
                    "$m = 50$ (1 of 2); never in $B = 8$.")
