"""The statistics of repeated runs: a group's mean with its Student's t interval, and whether two groups differ by
more than their noise (a paired t-test over the seeds both ran, else Welch's), with the repeats it would take to
tell a difference of the observed size. scipy.stats does the arithmetic (imported when first needed: every command
loads the report's modules, few compute anything)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # of every interval
ALPHA = 1 - CONFIDENCE  # two-sided significance level of the tests
POWER = 0.8  # the chance a hint's repeat count gives of telling a difference of the observed size
MAX_REPEATS = 10_000  # a hint's search stops here


@dataclass(frozen=True)
class Summary:
    """n values: mean, standard deviation (n - 1 in the denominator) and the mean's interval (nan for n < 2)."""

    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def summarize(values: Sequence[float]) -> Summary:
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    if std == 0:  # scipy takes a zero scale for a degenerate distribution: nan
        return Summary(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=stats.sem(x))
    return Summary(n, mean, std, float(low), float(high))


@dataclass(frozen=True)
class Comparison:
    """a - b: the difference of means, its interval, the test's p-value and name, the sample sizes, and the repeats
    per group (total) that would tell a difference of this size with probability POWER (None when told already, or
    when there is no difference to tell)."""

    diff: float
    low: float
    high: float
    p: float
    test: str
    n_a: int
    n_b: int
    needed: int | None

    @property
    def distinguishable(self) -> bool:
        return self.p < ALPHA

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict:
        """The numbers of a report's or a bench's comparison entry (its caller adds n and what was compared)."""
        return {"diff": self.diff, "low": self.low, "high": self.high, "p": self.p, "test": self.test,
                "distinguishable": self.distinguishable, "repeats_needed": self.needed}


PAIRED = "paired t-test"
WELCH = "Welch's t-test"


def compare(a: dict, b: dict) -> Comparison | None:
    """Group a against group b, each {replicate (its seed, say): value}. Paired over the replicates both groups
    ran (the noise the seed brings then cancels) when they share at least 2 and at least half of each side's (a
    failed job leaves its seed unpaired), else Welch's unequal-variance test; None when a side has fewer than 2
    values."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    shared = set(a) & set(b)
    if len(shared) >= 2 and 2 * len(shared) >= max(len(a), len(b)):
        keys = sorted(shared, key=str)
        xa, xb = np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)
        d = xa - xb
        diff, sd = float(d.mean()), float(d.std(ddof=1))
        if sd == 0:  # every pair differs by the same amount: no noise to test against
            return Comparison(diff, diff, diff, 1.0 if diff == 0 else 0.0, PAIRED, len(d), len(d), None)
        result = stats.ttest_rel(xa, xb)
        ci = result.confidence_interval(CONFIDENCE)
        p = float(result.pvalue)
        needed = None if p < ALPHA else _repeats_paired(diff / sd)
        return Comparison(diff, float(ci.low), float(ci.high), p, PAIRED, len(d), len(d), needed)
    xa, xb = np.array(list(a.values()), float), np.array(list(b.values()), float)
    diff = float(xa.mean() - xb.mean())
    va, vb = xa.var(ddof=1), xb.var(ddof=1)
    if va == 0 and vb == 0:
        return Comparison(diff, diff, diff, 1.0 if diff == 0 else 0.0, WELCH, len(xa), len(xb), None)
    result = stats.ttest_ind(xa, xb, equal_var=False)
    ci = result.confidence_interval(CONFIDENCE)
    p = float(result.pvalue)
    needed = None if p < ALPHA else _repeats_welch(diff, va, vb)
    return Comparison(diff, float(ci.low), float(ci.high), p, WELCH, len(xa), len(xb), needed)


def _power(noncentrality: float, df: float) -> float:
    """The two-sided t-test's chance of a significant result at this noncentrality (the noncentral t)."""
    from scipy import stats

    crit = stats.t.ppf(1 - ALPHA / 2, df)
    return float(stats.nct.sf(crit, df, noncentrality) + stats.nct.cdf(-crit, df, noncentrality))


def _smallest(power_at, start: int = 2) -> int | None:
    """The smallest n >= start with power_at(n) >= POWER (power grows with n), by doubling then bisection."""
    if power_at(MAX_REPEATS) < POWER:
        return None
    low, high = start, start
    while power_at(high) < POWER:
        low, high = high, min(2 * high, MAX_REPEATS)
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if power_at(mid) < POWER else (low, mid)
    return high


def _repeats_paired(effect: float) -> int | None:
    """Pairs a paired t-test needs to tell a mean difference of ``effect`` standard deviations of the differences."""
    if effect == 0:
        return None
    return _smallest(lambda n: _power(abs(effect) * math.sqrt(n), n - 1))


def _repeats_welch(diff: float, va: float, vb: float) -> int | None:
    """Repeats per group Welch's test needs to tell ``diff`` with these variances (equal group sizes)."""
    if diff == 0:
        return None

    def power_at(n: int) -> float:
        se2 = (va + vb) / n
        df = se2 ** 2 / ((va / n) ** 2 / (n - 1) + (vb / n) ** 2 / (n - 1))
        return _power(abs(diff) / math.sqrt(se2), df)

    return _smallest(power_at)


def decimals(spread: float) -> int | None:
    """Decimals that show ``spread`` to two significant digits (None: no spread to go by)."""
    if not spread or math.isnan(spread):
        return None
    return max(0, 1 - math.floor(math.log10(abs(spread))))


def plus_minus(value: float, spread: float, signed: bool = False) -> str:
    """``value ± spread``, both to the decimals that show the spread to two significant digits."""
    places = decimals(spread)
    sign = "+" if signed else ""
    if places is None:
        text = f"{value:{sign}.4g} ± 0"
    else:
        text = f"{value:{sign}.{places}f} ± {spread:.{places}f}"
    return text.replace("-", "−")


def verdict(c: Comparison) -> str:
    return "distinguishable" if c.distinguishable else "not distinguishable"


NOISE_REPEATS = 50  # past this many repeats to tell a difference, the difference is noise for any practical purpose


def hint(c: Comparison, rounds: bool = False) -> str:
    """How many repeats would tell a difference of the observed size (empty when it is told already); ``rounds``:
    said of a bench's rounds rather than of a sweep's groups."""
    if c.distinguishable:
        return ""
    if c.diff == 0:
        return "the means are equal: no number of repeats tells them apart"
    if c.needed is None:
        return (f"a difference this small is within the noise (more than {MAX_REPEATS:,} repeats per group would be "
                f"needed to tell it): treat them as equal")
    if c.needed > NOISE_REPEATS:
        unit = "rounds" if rounds else "repeats per group"
        return (f"a difference this small is within the noise ({c.needed:,} {unit} would be needed to tell it): "
                f"treat them as equal")
    more = max(c.needed - min(c.n_a, c.n_b), 0)
    many = f"{c.needed} rounds ({more} more)" if rounds else (
        f"n={c.needed} each ({more} more repeat{'s' if more != 1 else ''} per group)")
    return f"{many} would tell a difference of this size {POWER:.0%} of the time"
