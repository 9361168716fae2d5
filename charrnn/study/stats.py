"""Part II's statistics: each setting against the reference as a difference with a simultaneous 95% interval, its verdict, and power.

The rule, stated once (every number in bits per character; lower is better; a difference is
mean(setting) - mean(reference), so a positive difference means the reference is better):

- Spreads. The seed-to-seed spread of a setting "clearly differs" from the reference's when the
  two-sided F test of their two variances rejects at SPREAD_ALPHA (1%: with 6 seeds a variance
  ratio beyond about 15). Seven comparisons at a 5% level would flag a setting by chance too often.
- Intervals. The settings whose spread agrees with the reference's share one pooled spread (the
  pooled within-setting variance of the reference and those settings, with its degrees of freedom),
  and their intervals are Dunnett's many-to-one intervals: the critical value is the quantile of
  the largest of the |t| statistics of all those comparisons together (they share the reference
  mean and the pooled spread), so the whole family covers at the stated level. A setting whose
  spread clearly differs gets its own Welch interval (its own spread and the reference's,
  Welch-Satterthwaite degrees of freedom). The 5% is split between the two kinds (Bonferroni):
  k_w Welch intervals at 5%/k each, the Dunnett family at 5% (k - k_w)/k, so the chance that any of
  the k intervals misses its true difference is at most 5%.
- Verdict. The interval decides: all of it above zero, the reference is better; all below, the
  setting is; across zero, no difference detected, and the interval bounds how large one could be.
- Power. The smallest true difference that the interval excludes zero for with probability
  POWER (80%), from the noncentral t distribution at the design's seeds and pooled spread.
"""
from __future__ import annotations

import functools
import math
import re

import numpy as np
from scipy import optimize
from scipy import stats as sps

LEVEL = 0.95  # simultaneous coverage of the family of intervals
POWER = 0.8
SPREAD_ALPHA = 0.01  # a setting's spread "clearly differs" from the reference's: F test at this level

_Z, _W = np.polynomial.hermite_e.hermegauss(80)  # nodes and weights for E[f(Z)], Z standard normal
_W = _W / _W.sum()
_S_NODES = 400  # equal-probability nodes of the pooled spread's distribution (s / sigma)


SETTING = re.compile(r"^\s*([A-Za-z])\s*=\s*(\S+)\s*$")  # a setting named by a symbol and its value: "B = 8"


def setting_md(name: str) -> str:
    """A setting's name for Markdown prose and table cells, its symbol and value in math: "B = 8" (or
    "B=8") -> "$B = 8$"; a name in words ("reference", "shuffled chunks") is returned unchanged."""
    m = SETTING.match(str(name))
    return f"${m.group(1)} = {m.group(2)}$" if m else str(name)


def signed(x: float, digits: int = 3) -> str:
    """A signed number with a true minus sign: +0.062, \u22120.080."""
    return f"{x:+.{digits}f}".replace("-", "\u2212")


def _coverage(c: float, lams: tuple, df: float) -> float:
    """P(max_i |T_i| <= c) for T_i = (lam_i Z0 + sqrt(1 - lam_i^2) Z_i) / S, S^2 ~ chi2(df) / df,
    Z0, Z_i independent standard normals: the comparisons share the reference's mean (lam_i =
    sqrt(n_i / (n_i + n_0)), the correlation of comparisons i and j is lam_i lam_j)."""
    lam = np.asarray(lams)[:, None, None]
    r = np.sqrt(1 - lam ** 2)
    if math.isinf(df):
        s = np.ones(1)
    else:
        s = np.sqrt(sps.chi2.ppf((np.arange(_S_NODES) + 0.5) / _S_NODES, df) / df)
    z = _Z[None, :, None]
    cs = c * s[None, None, :]
    p = sps.norm.cdf((cs - lam * z) / r) - sps.norm.cdf((-cs - lam * z) / r)  # (k, z nodes, s nodes)
    return float(np.einsum("j,js->", _W, p.prod(axis=0)) / len(s))


@functools.lru_cache(maxsize=256)
def dunnett_critical(n_ref: int, n_others: tuple, df: float, level: float = LEVEL) -> float:
    """Two-sided critical value c of Dunnett's many-to-one intervals: with probability `level` every
    |mean_i - mean_ref - true difference_i| <= c s sqrt(1/n_i + 1/n_ref) at once, s the pooled
    spread with `df` degrees of freedom. One comparison: the t quantile."""
    if len(n_others) == 1:
        return float(sps.t.ppf(0.5 + level / 2, df))
    lams = tuple(math.sqrt(n / (n + n_ref)) for n in n_others)
    return float(optimize.brentq(lambda c: _coverage(c, lams, df) - level, 0.5, 50, xtol=1e-6))


def spreads_differ(a, b, alpha: float = SPREAD_ALPHA) -> bool:
    """Whether the variances of samples a and b clearly differ: two-sided F test at `alpha`."""
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    if va == 0 or vb == 0:
        return va != vb
    f = va / vb
    p = 2 * min(sps.f.cdf(f, len(a) - 1, len(b) - 1), sps.f.sf(f, len(a) - 1, len(b) - 1))
    return bool(p < alpha)


def welch(a, b, level: float) -> tuple[float, float, float]:
    """(difference mean(a) - mean(b), half-width of its two-sided `level` Welch interval, df)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else math.inf
    return float(a.mean() - b.mean()), float(sps.t.ppf(0.5 + level / 2, df) * se), float(df)


def differences(scores: dict, reference: str = "reference", level: float = LEVEL) -> dict:
    """Every setting of `scores` ({name: seed scores}, non-finite scores left out) against `reference`.

    Returns {"rows": [{"name", "diff", "lo", "hi", "method" ("Dunnett" or "Welch"), "n", "sd",
    "text"}] in the order of `scores`, "pooled_sd", "df", "crit" (Dunnett's critical value),
    "k" (comparisons), "level"}; see the module docstring for the rule."""
    clean = {n: np.asarray([x for x in s if np.isfinite(x)], float) for n, s in scores.items()}
    ref = clean[reference]
    others = [n for n in clean if n != reference]
    k = len(others)
    alpha = 1 - level
    flagged = [n for n in others if spreads_differ(clean[n], ref)]
    pooled_names = [reference] + [n for n in others if n not in flagged]
    df = sum(len(clean[n]) - 1 for n in pooled_names)
    pooled_sd = math.sqrt(sum((len(clean[n]) - 1) * np.var(clean[n], ddof=1) for n in pooled_names) / df)
    dunnett = [n for n in others if n not in flagged]
    crit = dunnett_critical(len(ref), tuple(len(clean[n]) for n in dunnett), df,
                            1 - alpha * len(dunnett) / k) if dunnett else float("nan")
    rows = []
    for n in others:
        s = clean[n]
        if n in flagged:
            diff, half, _ = welch(s, ref, 1 - alpha / k)
            method = "Welch"
        else:
            diff = float(s.mean() - ref.mean())
            half = crit * pooled_sd * math.sqrt(1 / len(s) + 1 / len(ref))
            method = "Dunnett"
        row = {"name": n, "diff": diff, "lo": diff - half, "hi": diff + half, "method": method,
               "n": len(s), "sd": float(np.std(s, ddof=1))}
        row["text"] = verdict_text(n, row["diff"], row["lo"], row["hi"], reference, level)
        rows.append(row)
    return {"rows": rows, "pooled_sd": pooled_sd, "df": df, "crit": crit, "k": k, "level": level,
            "n_ref": len(ref), "reference": reference, "welch": flagged}


def verdict_text(name: str, diff: float, lo: float, hi: float, reference: str = "reference",
                 level: float = LEVEL) -> str:
    """The verdict that follows from the interval [lo, hi] of mean(name) - mean(reference)."""
    pct = f"{level:.0%}"
    if lo > 0:
        return f"the {reference} better by {diff:.3f} bits ({pct} interval {lo:.3f} to {hi:.3f})"
    if hi < 0:
        return f"{setting_md(name)} better by {-diff:.3f} bits ({pct} interval {-hi:.3f} to {-lo:.3f})"
    return (f"no difference detected ({signed(diff)} bits, {pct} interval {signed(lo)} to {signed(hi)}): "
            f"the interval excludes differences above {max(-lo, hi):.3f} bits")


def detectable_difference(sd: float, n_ref: int, n_other: int, df: float, crit: float,
                          power: float = POWER) -> float:
    """The smallest true difference whose interval (half-width crit * s * sqrt(1/n + 1/n_ref), s with
    `df` degrees of freedom) excludes zero with probability `power`: noncentral t."""
    se = sd * math.sqrt(1 / n_other + 1 / n_ref)

    def reject(delta):
        nc = delta / se
        wrong_side = np.nan_to_num(sps.nct.cdf(-crit, df, nc), nan=0.0)  # far in the tail scipy gives nan for ~0
        return sps.nct.sf(crit, df, nc) + wrong_side - power

    return float(optimize.brentq(reject, 1e-9 * se, (crit + 6) * se))  # power is past 0.999 at crit + 6


def design_power(sd: float, seeds: int, settings: int, level: float = LEVEL, power: float = POWER) -> float:
    """The detectable difference of a design of `settings` settings (the reference among them) with
    `seeds` seeds each, pooled spread `sd`, Dunnett's intervals for the settings - 1 comparisons."""
    df = settings * (seeds - 1)
    crit = dunnett_critical(seeds, (seeds,) * (settings - 1), df, level)
    return detectable_difference(sd, seeds, seeds, df, crit, power)


def short_verdict(row: dict) -> str:
    """The verdict of one row of `differences` in a few words."""
    return ("reference better" if row["lo"] > 0 else f"{setting_md(row['name'])} better" if row["hi"] < 0
            else "no difference detected")
