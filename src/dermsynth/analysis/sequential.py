"""Group-sequential seed-aware tests: add seeds in rounds and stop each comparison once it is
decided, without inflating its error rates.

Why. Looking at a comparison after every round of seeds and stopping as soon as p < 0.05 is
"optional stopping": with 4 looks the false-positive rate is about 13 %, not 5 %. A
group-sequential design fixes the looks in advance (seeds per arm at each, the last one the
most the study will run) and spends the error rate over them with a Lan–DeMets spending
function, so that the probability of a false claim over *all* looks is α.

What we use and why:

- **Spending**: O'Brien–Fleming-like (default; α(t) = 2 − 2Φ(z₁₋α/₂ / √t)) spends almost
  nothing at early looks, so a study that reaches its last look loses almost no power against
  the fixed design; Pocock-like (α(t) = α ln(1 + (e − 1) t)) spends evenly and stops more
  studies early when the effect is large.
- **Information fractions** t_k = seeds_k / seeds_K. The variance of a difference is
  σ²_seed / S + σ²_image / N: the image term does not shrink with seeds, so the true fractions
  are closer together and the looks more correlated than assumed — which lowers the real
  false-positive rate, never raises it.
- **Boundaries** by the recursive numerical integration of Armitage, McPherson & Rowe (1969)
  (what gsDesign and rpact compute), on the canonical joint distribution of the look
  statistics (independent increments), exact to about 1e-7.
- **Each look's statistic** is the seed-aware t test's (df of the seed term), turned into the
  normal score of its p-value, so that at a single look the test is exactly the fixed one;
  ``bench/sequential_design.py`` and the test suite measure the level of the whole procedure
  under the seed, A/A and image × arm interaction nulls.
- **Equivalence** (no difference ≥ the margin) is decided by the two one-sided tests with a
  one-sided boundary from the same spending function: a "no difference" stop is a claim too.
- **The p-value** a stopped comparison reports is the stage-wise ordering p (Jennison &
  Turnbull, ch. 8): the probability under the null of crossing earlier, plus of reaching this
  look and being at least as extreme. It is ≤ α exactly when the comparison crossed its
  boundary, and uniform under the null, so BH across a family can use it. A comparison that
  stopped without crossing (decided equivalent, or at its last look) gets
  α + (1 − α) × its look's fixed-design p: above α, so never a claim, still ordered by evidence.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import optimize, stats

from dermsynth.errors import ConfigError
from dermsynth.experiments.sequential_state import LOOKS_AT_FAMILY, LOOKS_AT_MAIN, load_state, looks_at, seed_sequence

SPENDING = ("obrien-fleming", "pocock")
SPENDING_NAMES = {"obrien-fleming": "O'Brien–Fleming-type", "pocock": "Pocock-type"}
_LOWER = -8.0  # the continuation region of a one-sided boundary starts here (P(Z < −8) ≈ 6e-16)
_POINTS = 801  # grid points per look (odd: Simpson's rule)


def spent(t: float, alpha: float, spending: str) -> float:
    """Cumulative α spent by information fraction ``t`` (Lan–DeMets)."""
    if spending == "obrien-fleming":
        return float(2 - 2 * stats.norm.cdf(stats.norm.isf(alpha / 2) / np.sqrt(t))) if t > 0 else 0.0
    if spending == "pocock":
        return float(alpha * np.log(1 + (np.e - 1) * t))
    raise ConfigError(f"spending={spending!r}; choose one of {', '.join(SPENDING)}")


def _simpson(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(lo, hi, _POINTS)
    w = np.ones(_POINTS)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return z, w * (hi - lo) / (3 * (_POINTS - 1))


@lru_cache(maxsize=64)
def _boundaries(fractions: tuple[float, ...], alpha: float, spending: str, sides: int) -> tuple[tuple, tuple, tuple]:
    """Upper z boundary of every look, α spent by each (two-sided: ±c, one-sided: c) and the
    sub-density of Z_k on its continuation region (grid, weights, values) after each look."""
    bounds, spent_at, densities = [], [], []
    density = None
    before = 0.0
    for k, t in enumerate(fractions):
        target = spent(t, alpha, spending) - before
        if density is None:
            c = float(stats.norm.isf(target / sides)) if target > 0 else np.inf
            crossed = sides * float(stats.norm.sf(c))
        else:
            c = _solve_bound(density, fractions[k - 1], t, target, sides)
            crossed = _cross(density, fractions[k - 1], t, c, sides) if np.isfinite(c) else 0.0
        before += crossed
        bounds.append(c)
        spent_at.append(before)
        density = _next_density(density, fractions[k - 1] if k else None, t, c, sides)
        densities.append(density)
    return tuple(bounds), tuple(spent_at), tuple(densities)


def _solve_bound(density, prev_t: float, t: float, target: float, sides: int) -> float:
    """The boundary whose crossing probability at this look is ``target`` (∞ when nothing is left to spend)."""
    if target <= 0:
        return np.inf
    hi = 1.0
    while _cross(density, prev_t, t, hi, sides) > target:
        hi *= 2
    return float(optimize.brentq(lambda x: _cross(density, prev_t, t, x, sides) - target, 1e-9, hi, xtol=1e-10))


def _transition(prev_t: float, t: float) -> tuple[float, float]:
    r = np.sqrt(prev_t / t)
    return r, float(np.sqrt(1 - r * r))


def _cross(density, prev_t: float, t: float, c: float, sides: int) -> float:
    """P(no crossing before this look, Z_k beyond ±c) from the previous look's sub-density."""
    z, w, f = density
    r, s = _transition(prev_t, t)
    up = stats.norm.sf((c - r * z) / s)
    if sides == 2:
        up = up + stats.norm.cdf((-c - r * z) / s)
    return float((w * f * up).sum())


def _next_density(density, prev_t: float | None, t: float, c: float, sides: int):
    """The sub-density of Z_k on its continuation region (what carries on to the next look)."""
    hi = min(c, 12.0)
    lo = -hi if sides == 2 else _LOWER
    z, w = _simpson(lo, hi)
    if density is None:
        return z, w, stats.norm.pdf(z)
    zp, wp, fp = density
    r, s = _transition(prev_t, t)
    f = (wp * fp)[None, :] * stats.norm.pdf((z[:, None] - r * zp[None, :]) / s) / s
    return z, w, f.sum(axis=1)


@dataclass(frozen=True)
class SequentialDesign:
    """Looks at ``looks`` seeds per arm (increasing; the last is the most a comparison gets)."""

    looks: tuple[int, ...]
    alpha: float = 0.05
    spending: str = "obrien-fleming"

    def __post_init__(self):
        looks = tuple(int(n) for n in self.looks)
        if not looks or looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
            raise ConfigError(f"sequential looks {list(looks)}: seeds per arm must increase and start at ≥ 2")
        if self.spending not in SPENDING:
            raise ConfigError(f"spending={self.spending!r}; choose one of {', '.join(SPENDING)}")
        object.__setattr__(self, "looks", looks)

    @classmethod
    def spaced(cls, first: int, most: int, looks: int = 3, alpha: float = 0.05,
               spending: str = "obrien-fleming") -> SequentialDesign:
        """``looks`` looks from ``first`` to ``most`` seeds per arm, as evenly spaced as whole seeds allow."""
        if most < first:
            raise ConfigError(f"--max-seeds {most} is below the {first} seeds the config plans")
        counts = sorted({int(round(x)) for x in np.linspace(first, most, max(1, looks))})
        return cls(tuple(counts), alpha, spending)

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(n / self.looks[-1] for n in self.looks)

    def boundaries(self, sides: int = 2) -> tuple[float, ...]:
        return _boundaries(self.fractions, self.alpha, self.spending, sides)[0]

    @property
    def spending_name(self) -> str:
        return SPENDING_NAMES[self.spending]

    def spent(self, sides: int = 2) -> tuple[float, ...]:
        """Cumulative α spent by each look."""
        return _boundaries(self.fractions, self.alpha, self.spending, sides)[1]

    def nominal(self, sides: int = 2) -> tuple[float, ...]:
        """The fixed-design p below which each look's test crosses its boundary."""
        return tuple(float(sides * stats.norm.sf(c)) for c in self.boundaries(sides))

    def look_of(self, seeds: int) -> int:
        """0-based index of the look at ``seeds`` seeds per arm."""
        if seeds not in self.looks:
            raise ConfigError(f"{seeds} seeds per arm is not a look of this design ({list(self.looks)})")
        return self.looks.index(seeds)

    def stagewise_p(self, look: int, p_fixed: float, sides: int = 2) -> float:
        """The stage-wise ordering p of stopping at ``look`` with that look's fixed-design p
        (see the module's docstring); NaN in, NaN out."""
        if not np.isfinite(p_fixed):
            return float("nan")
        bounds = self.boundaries(sides)
        z = float(stats.norm.isf(max(p_fixed, 1e-300) / sides))
        if z < bounds[look]:  # stopped without crossing: above α, ordered by evidence
            return float(self.alpha + (1 - self.alpha) * p_fixed)
        if look == 0:
            return float(p_fixed)
        _, before, densities = _boundaries(self.fractions, self.alpha, self.spending, sides)
        return float(before[look - 1] + _cross(densities[look - 1], self.fractions[look - 1], self.fractions[look],
                                               z, sides))

    def crossed(self, look: int, p_fixed: float, sides: int = 2) -> bool:
        return bool(np.isfinite(p_fixed) and p_fixed <= self.nominal(sides)[look])

    def as_dict(self) -> dict:
        return {**asdict(self), "looks": list(self.looks), "nominal": list(self.nominal()),
                "spent": list(self.spent()), "nominal_equivalence": list(self.nominal(1))}


@dataclass(frozen=True)
class LookDecision:
    """One comparison at one look: the fixed-design p-values of that look and what they decide."""

    look: int
    seeds: int
    p_fixed: float
    p_equiv_fixed: float
    decision: str  # "difference" | "equivalence" | "continue" | "last look" | "untestable"

    @property
    def stopped(self) -> bool:
        return self.decision != "continue"


def decide(design: SequentialDesign, look: int, p_fixed: float, p_equiv_fixed: float) -> LookDecision:
    """Whether a comparison stops at ``look``: its difference test crossed the two-sided boundary,
    or its equivalence test the one-sided one, or it is at the design's last look."""
    seeds = design.looks[look]
    if design.crossed(look, p_fixed, 2):
        decision = "difference"
    elif design.crossed(look, p_equiv_fixed, 1):
        decision = "equivalence"
    elif look == len(design.looks) - 1:
        decision = "last look"
    else:
        decision = "continue"  # an untestable look (tied seeds) goes on: more seeds may break the tie
    return LookDecision(look, seeds, float(p_fixed), float(p_equiv_fixed), decision)


def design_from(state: dict) -> SequentialDesign:
    d = state["design"]
    return SequentialDesign(tuple(d["looks"]), float(d["alpha"]), d["spending"])


class LookView:
    """A sequential study's comparisons as the report's comparison table computes them: each on
    the seeds of the look where it stopped (or of ``look`` for every one, when the runner takes
    that look), with the stage-wise p-values and the look it was decided at.

    ``state`` is the study's record (experiments/sequential_state.py): its design and, per look,
    each comparison still running there and what that look decided."""

    def __init__(self, state: dict, planned_seeds: list[int], look: int | None = None):
        self.design = design_from(state)
        self.planned, self.look = list(planned_seeds), look
        self.final: dict[str, tuple[int, str]] = {}
        self.recorded: dict[str, dict] = {}  # each comparison's decision at its last look, as recorded
        for entry in state.get("looks", []):
            for key, d in entry["decisions"].items():
                self.final[key] = (int(entry["look"]), d["decision"])
                self.recorded[key] = d

    def at(self, key: str) -> int | None:
        """The 0-based look this comparison is read at (None: not one the study has looked at)."""
        if self.look is not None:
            return self.look
        return self.final[key][0] if key in self.final else None

    def seeds_for(self, key: str) -> list[int] | None:
        look = self.at(key)
        return None if look is None else seed_sequence(self.planned, self.design.looks[look])

    def columns(self, key: str, p_fixed: float, p_equiv_fixed: float) -> dict:
        """The row's sequential columns; at the runner's look, its fixed-design p-values as they are."""
        look = self.at(key)
        if self.look is not None or look is None:
            return {}
        return {"p_seed": self.design.stagewise_p(look, p_fixed),
                "p_equiv": self.design.stagewise_p(look, p_equiv_fixed, sides=1),
                "look": look + 1, "looks": len(self.design.looks), "stopped": self.final[key][1],
                "alpha_spent": self.design.spent()[look], "spending": self.design.spending_name}


def report_view(out: str | Path, looks_at_: str = LOOKS_AT_FAMILY) -> LookView | None:
    """How a report reads the comparisons a sequential study's looks decide — those of
    ``looks_at_`` (None: the study is not sequential, or its looks decide something else)."""
    state, seeds = load_state(out), _planned_seeds(out)
    if state is None or not state["looks"] or seeds is None or looks_at(state) != looks_at_:
        return None
    return LookView(state, seeds)


def _planned_seeds(out: str | Path) -> list[int] | None:
    """The seeds the study's config plans, as its experiment.json records them (None: no record)."""
    marker = Path(out) / "experiment.json"
    if not marker.exists():
        return None
    seeds = json.loads(marker.read_text())["spec"].get("seeds", 5)
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


def planned_seeds_only(out: str | Path, table):
    """The results table as a report's fixed-design tables read it: where a sequential study's
    looks gave seeds to its main comparison's cells alone, only the config's planned seeds (the
    extra ones would make those two cells' other comparisons unpaired and their size depend on
    what the looks saw); any other study's table as it is."""
    state, seeds = load_state(out), _planned_seeds(out)
    if state is None or looks_at(state) != LOOKS_AT_MAIN or seeds is None:
        return table
    return table[table["seed"].isin(seeds)]
