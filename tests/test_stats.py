"""Part II's intervals on synthetic seed scores with a known answer: coverage of the family, power, the verdict's words."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from charrnn.study import stats

NAMES = ["reference", "Adam", "random", "chunks", "B8", "B32", "m50", "m200"]
SD = 0.05  # bits: about the seed spread of Part II


def _scores(rng, means, n=6, sd=SD):
    return {name: rng.normal(mu, sd, n) for name, mu in zip(NAMES, means)}


def test_dunnett_critical_is_the_t_quantile_for_one_comparison_and_agrees_with_scipy():
    assert stats.dunnett_critical(6, (6,), 10) == pytest.approx(sps.t.ppf(0.975, 10), rel=1e-12)
    rng = np.random.default_rng(0)
    for ns in [(6,) * 8, (4, 6, 3, 5)]:  # equal seeds, and unequal (diverged runs left out)
        groups = [rng.normal(0, 1, n) for n in ns]
        df = sum(n - 1 for n in ns)
        sp = math.sqrt(sum((n - 1) * np.var(g, ddof=1) for n, g in zip(ns, groups)) / df)
        ci = sps.dunnett(*groups[1:], control=groups[0], random_state=1).confidence_interval(0.95)
        c_scipy = (ci.high - ci.low) / 2 / (sp * np.sqrt(1 / np.array(ns[1:]) + 1 / ns[0]))
        # scipy integrates the multivariate t by quasi-Monte Carlo: agreement to its accuracy
        assert stats.dunnett_critical(ns[0], ns[1:], df) == pytest.approx(c_scipy, rel=3e-3)


def test_the_family_of_seven_intervals_misses_a_true_zero_about_5_percent_of_the_time():
    """Eight settings equal in truth, 6 seeds each: the share of experiments in which any of the
    seven verdicts declares a difference (the familywise false-positive rate) is near 5%; a single
    unadjusted t interval per comparison would be near 20%."""
    rng = np.random.default_rng(1)
    sims = 2000
    false = sum(any(r["lo"] > 0 or r["hi"] < 0 for r in stats.differences(_scores(rng, [2.8] * 8))["rows"])
                for _ in range(sims))
    assert 0.035 <= false / sims <= 0.065  # 5% within 3 standard errors (0.49% at 2000 experiments)


def test_the_stated_power_at_the_stated_difference():
    """One setting worse by exactly the detectable difference of the design: its interval lies wholly
    above zero in about 80% of the experiments."""
    delta = stats.design_power(SD, 6, 8)
    assert delta == pytest.approx(2.07 * SD, rel=0.01)  # about 2 spreads at 6 seeds
    rng = np.random.default_rng(2)
    sims = 2000
    hits = 0
    for _ in range(sims):
        d = stats.differences(_scores(rng, [2.8, 2.8 + delta] + [2.8] * 6))
        hits += d["rows"][0]["lo"] > 0
    assert 0.77 <= hits / sims <= 0.83  # 80% within 3 standard errors (0.89%)


def test_more_seeds_detect_smaller_differences():
    d = [stats.design_power(SD, n, 8) for n in (3, 6, 10)]
    assert d[0] > d[1] > d[2]
    assert d[0] == pytest.approx(3.1 * SD, rel=0.02) and d[2] == pytest.approx(1.58 * SD, rel=0.02)


def test_the_verdict_follows_from_the_interval():
    assert stats.verdict_text("m50", 0.21, 0.12, 0.30).startswith("the reference better by 0.210 bits (95% interval 0.120 to 0.300)")
    assert stats.verdict_text("B8", -0.10, -0.15, -0.05).startswith("B8 better by 0.100 bits (95% interval 0.050 to 0.150)")
    text = stats.verdict_text("Adam", 0.01, -0.04, 0.09)
    assert text.startswith("no difference detected") and "excludes differences above 0.090" in text
    rng = np.random.default_rng(3)
    d = stats.differences(_scores(rng, [2.8, 3.1, 2.5, 2.8, 2.8, 2.8, 2.8, 2.8]))
    words = {r["name"]: r["text"] for r in d["rows"]}
    assert words["Adam"].startswith("the reference better")  # 6 spreads worse
    assert words["random"].startswith("random better")  # 6 spreads better
    for r in d["rows"]:
        assert (r["lo"] > 0) == r["text"].startswith("the reference better")
        assert (r["hi"] < 0) == r["text"].startswith(f"{r['name']} better")
        assert (r["lo"] <= 0 <= r["hi"]) == r["text"].startswith("no difference detected")


def test_a_setting_whose_spread_clearly_differs_gets_its_own_welch_interval():
    rng = np.random.default_rng(6)
    scores = _scores(rng, [2.8] * 8)
    scores["B32"] = rng.normal(2.9, 20 * SD, 6)  # one lagging setting with a wide spread
    d = stats.differences(scores)
    methods = {r["name"]: r["method"] for r in d["rows"]}
    assert methods["B32"] == "Welch" and d["welch"] == ["B32"]
    assert all(m == "Dunnett" for n, m in methods.items() if n != "B32")
    # the Welch interval at 1 - 5%/7: scipy's Welch interval
    row = next(r for r in d["rows"] if r["name"] == "B32")
    want = sps.ttest_ind(scores["B32"], scores["reference"], equal_var=False).confidence_interval(1 - 0.05 / 7)
    assert (row["lo"], row["hi"]) == pytest.approx((want.low, want.high), rel=1e-9)
    # its wide spread is kept out of the pool: the others' intervals are as narrow as without it
    pooled = math.sqrt(np.mean([np.var(scores[n], ddof=1) for n in NAMES if n != "B32"]))
    assert d["pooled_sd"] == pytest.approx(pooled, rel=1e-12)


def test_diverged_seeds_are_left_out():
    rng = np.random.default_rng(5)
    scores = _scores(rng, [2.8] * 8)
    scores["Adam"] = np.append(scores["Adam"], np.inf)
    d = stats.differences(scores)
    assert d["rows"][0]["n"] == 6 and np.isfinite(d["rows"][0]["hi"])


# ----------------------------------------------------------------------------- the findings' rows and words
def test_saturation_counts_units_held_at_the_ends_of_tanh():
    from charrnn.study import findings

    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 5, (3, 40))
    m, K = 6, 5
    calm = {"U": np.zeros((m, K)), "W": np.zeros((m, m)), "b": np.zeros(m)}
    assert findings.hidden_saturation(calm, blocks, np.zeros(m)) == 0.0
    # units 0-2 driven to +-1 by a large bias, units 3-5 left at 0: half of the units saturated
    loud = dict(calm, b=np.array([9.0, -9.0, 9.0, 0.0, 0.0, 0.0]))
    assert findings.hidden_saturation(loud, blocks, np.zeros(m)) == 0.5


def test_verdict_paragraph_and_discussion_follow_the_intervals():
    from charrnn.study import findings

    rng = np.random.default_rng(8)
    d = stats.differences(_scores(rng, [2.8, 3.1, 2.5, 2.8, 2.8, 2.8, 2.8, 2.8]))
    para = findings.verdict_paragraph(d, ["Adam", "random"])
    assert "Adam: the reference better by" in para and "random: random better by" in para
    lines = "\n".join(findings.discussion_lines(d, {n: None for n in NAMES}, 6))
    assert "The reference is better than Adam" in lines and "random is better than the reference" in lines
    assert "No difference is detected for chunks, B8, B32, m50 and m200" in lines


def test_stability_counts_the_verdicts_one_left_out_seed_changes():
    from charrnn.study import findings

    rng = np.random.default_rng(9)
    far = {n: {"test": list(s)} for n, s in _scores(rng, [2.8, 3.3] + [2.8] * 6).items()}  # Adam 10 spreads worse
    two = {n: far[n] for n in ("reference", "Adam")}
    assert findings.stability_text(two) == ("How firm the verdicts are: dropping one seed at a time (each of the 12 in "
                                            "turn) and redoing the comparisons changes at most 0 of the 1 verdicts; 0 of "
                                            "the 12 drops change any.")
    # a difference at the edge of detection: some left-out seed flips it
    edge = {"reference": {"test": [2.80, 2.85, 2.75, 2.80]}, "Adam": {"test": [2.88, 2.93, 2.83, 2.95]}}
    d = stats.differences({n: v["test"] for n, v in edge.items()})
    assert d["rows"][0]["lo"] > 0  # detected with every seed
    assert "changes at most 1 of the 1 verdicts" in findings.stability_text(edge)
