"""The paper's claims (Ye et al. 2021 and its journal version), each tested on a study with a stated rule.

A comparison pairs two models of the study that differ in one factor only (the residual merge, the attention
merge, or attention itself), seed by seed. Each piece of evidence is a paired t-test over the shared seeds with its
95% interval; its verdict follows from the interval, never from a point estimate:

- **supported**: the interval lies entirely on the claimed side (of 0, or of the margin for "at least as");
- **not supported**: the interval lies entirely on the other side, or (accuracy claims) entirely within the
  margin of "no difference" where the claim says "better";
- **inconclusive**: anything else, and always with fewer than ``MIN_SEEDS`` paired seeds.

A claim with several pieces of evidence is supported when every deciding piece supports it, not supported when
some contradict it and none support it, and inconclusive otherwise. The smoothness claim is decided by the
measures that are invariant to the networks' rescaling symmetries only; the others are shown beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from landscape.report.collect import Model, Study
from landscape.report.stats import Paired, one_sample, paired

MIN_SEEDS = 3  # with fewer, a t interval over seeds is too wide to mean anything: inconclusive by rule
ACCURACY_MARGIN = 0.01  # one point of accuracy: "at least as accurate" tolerates less, "better" needs more
STRONG_CORRELATION = 0.5  # |ρ| ≥ 0.5 is a strong correlation (Cohen 1988); a weak one stays below

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"


@dataclass(frozen=True)
class Comparison:
    """Two models of the study that differ in one factor: ``treatment`` has multiplication (or attention)."""

    factor: str
    treatment: str
    control: str


@dataclass
class Evidence:
    metric: str
    comparison: Comparison | None  # None: a one-sample test (the correlation of claim 1)
    test: Paired
    verdict: str
    reason: str
    decides: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "factor": self.comparison.factor if self.comparison else None,
                "treatment": self.comparison.treatment if self.comparison else None,
                "control": self.comparison.control if self.comparison else None,
                "verdict": self.verdict, "reason": self.reason, "decides": self.decides, **self.test.as_dict()}


@dataclass
class Claim:
    id: str
    title: str
    rule: str
    evidence: list[Evidence] = field(default_factory=list)
    verdict: str = INCONCLUSIVE
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "rule": self.rule, "verdict": self.verdict,
                "summary": self.summary, "evidence": [e.as_dict() for e in self.evidence]}


def comparisons(models: list[Model]) -> list[Comparison]:
    """Every pair of models that differ in exactly one factor the claims are about."""
    out = []
    for a in models:
        for b in models:
            ca, cb = a.config, b.config
            if a is b or "depth" not in ca or "depth" not in cb:
                continue
            rest = {k for k in {*ca, *cb} if k not in ("merge", "attention", "attention_merge")}
            if any(ca.get(k) != cb.get(k) for k in rest):
                continue
            same_attention = ca.get("attention") == cb.get("attention") and \
                ca.get("attention_merge") == cb.get("attention_merge")
            if ca["merge"] == "mul" and cb["merge"] == "add" and same_attention:
                out.append(Comparison("residual merge (× vs +)", a.label, b.label))
            if ca["merge"] == cb["merge"] and ca.get("attention") and ca.get("attention") == cb.get("attention") \
                    and ca.get("attention_merge") == "mul" and cb.get("attention_merge") == "add":
                out.append(Comparison("attention merge (× vs +)", a.label, b.label))
            if ca["merge"] == cb["merge"] and ca.get("attention") and ca.get("attention_merge") == "mul" \
                    and not cb.get("attention"):
                out.append(Comparison(f"attention ({ca['attention']}) vs none", a.label, b.label))
    return out


def _directional(test: Paired, *, better: str, n_min: int = MIN_SEEDS) -> tuple[str, str]:
    """Verdict of "the treatment is better" (``better``: which sign of treatment − control is better)."""
    if test.n < n_min:
        return INCONCLUSIVE, f"{test.n} paired seed(s) < {n_min}"
    lo, hi = (test.ci_low, test.ci_high) if better == "higher" else (-test.ci_high, -test.ci_low)
    if lo > 0:
        return SUPPORTED, "95% CI excludes 0 on the better side"
    if hi < 0:
        return NOT_SUPPORTED, "95% CI excludes 0 on the worse side"
    return INCONCLUSIVE, "95% CI contains 0"


def _better_accuracy(test: Paired) -> tuple[str, str]:
    verdict, reason = _directional(test, better="higher")
    if verdict == INCONCLUSIVE and test.n >= MIN_SEEDS and -ACCURACY_MARGIN < test.ci_low and \
            test.ci_high < ACCURACY_MARGIN:
        return NOT_SUPPORTED, f"95% CI within ±{ACCURACY_MARGIN:g}: no difference that matters"
    return verdict, reason


def _non_inferior(test: Paired) -> tuple[str, str]:
    if test.n < MIN_SEEDS:
        return INCONCLUSIVE, f"{test.n} paired seed(s) < {MIN_SEEDS}"
    if test.ci_low > -ACCURACY_MARGIN:
        return SUPPORTED, f"95% CI lower bound > −{ACCURACY_MARGIN:g} (non-inferior)"
    if test.ci_high < -ACCURACY_MARGIN:
        return NOT_SUPPORTED, f"95% CI upper bound < −{ACCURACY_MARGIN:g} (worse by more than the margin)"
    return INCONCLUSIVE, f"95% CI crosses −{ACCURACY_MARGIN:g}"


def _weak(test: Paired) -> tuple[str, str]:
    if test.n < MIN_SEEDS:
        return INCONCLUSIVE, f"{test.n} seed(s) < {MIN_SEEDS}"
    r = STRONG_CORRELATION
    if -r < test.ci_low and test.ci_high < r:
        return SUPPORTED, f"95% CI within (−{r:g}, {r:g})"
    if test.ci_low >= r or test.ci_high <= -r:
        return NOT_SUPPORTED, f"95% CI beyond ±{r:g}: a strong correlation"
    return INCONCLUSIVE, f"95% CI crosses ±{r:g}"


def _combine(claim: Claim, *, what: str) -> None:
    deciding = [e for e in claim.evidence if e.decides]
    verdicts = [e.verdict for e in deciding]
    if not deciding:
        claim.verdict, claim.summary = INCONCLUSIVE, f"no data: the study has no {what}"
    elif all(v == SUPPORTED for v in verdicts):
        claim.verdict = SUPPORTED
    elif NOT_SUPPORTED in verdicts and SUPPORTED not in verdicts:
        claim.verdict = NOT_SUPPORTED
    else:
        claim.verdict = INCONCLUSIVE
    if deciding:
        counts = {v: verdicts.count(v) for v in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE) if v in verdicts}
        claim.summary = f"{len(deciding)} deciding test(s): " + ", ".join(f"{n} {v}" for v, n in counts.items())


COMBINE_RULE = ("supported if every deciding test supports it; not supported if some contradict it and none "
                "support it; inconclusive otherwise")


def evaluate_claims(study: Study) -> list[Claim]:
    """The five verdicts (claims 1, 2, 3, 4a, 4b) from the study's stored values."""
    pairs = comparisons(study.models)
    by_label = {m.label: m for m in study.models}
    values = study.values

    def test(metric: str, c: Comparison) -> Paired:
        return paired(values.get(metric, {}).get(c.treatment, {}), values.get(metric, {}).get(c.control, {}))

    claims = []
    # 1. Attention weights correlate only weakly with feature importance.
    c1 = Claim("1", "Attention weights correlate only weakly with channel importance",
               f"per attention model and importance kind: mean pooled Spearman ρ over seeds (one-sample t interval); "
               f"weak if the 95% CI lies within (−{STRONG_CORRELATION:g}, {STRONG_CORRELATION:g}), strong if it "
               f"lies beyond ±{STRONG_CORRELATION:g}; n < {MIN_SEEDS} seeds: inconclusive. Overall: {COMBINE_RULE}")
    for metric in sorted(m for m in study.metrics if m.endswith(".spearman")):
        for label, seeds in sorted(values[metric].items()):
            if by_label[label].config.get("attention") or by_label[label].config.get("model"):
                t = one_sample(seeds)
                verdict, reason = _weak(t)
                c1.evidence.append(Evidence(metric, Comparison("attention", label, "—"), t, verdict, reason))
    _combine(c1, what="attention analysis of an attention model")
    claims.append(c1)

    # 2. Multiplication is what makes attention work: attention merge × vs + on accuracy (and every measure).
    c2 = Claim("2", "Feature-map multiplication is what makes attention work (attention merge × vs +)",
               f"attention merge × minus + on test accuracy, paired t-test over seeds: supported if the 95% CI > 0; "
               f"not supported if it is < 0 or lies within ±{ACCURACY_MARGIN:g} (no difference that matters); "
               f"n < {MIN_SEEDS}: inconclusive. Every other measure of the same pairs is shown (not deciding). "
               f"Overall: {COMBINE_RULE}")
    for c in (p for p in pairs if p.factor.startswith("attention merge")):
        t = test("accuracy", c)
        c2.evidence.append(Evidence("accuracy", c, t, *_better_accuracy(t)))
        for metric, m in sorted(study.metrics.items()):
            if m.family in ("smoothness", "robustness") and m.better:
                t = test(metric, c)
                if t.n:
                    c2.evidence.append(Evidence(metric, c, t, *_directional(t, better=m.better), decides=False))
    _combine(c2, what="pair of models differing only in the attention merge (attention_merge=add)")
    claims.append(c2)

    # 3. Multiplication makes the landscape smoother: every smoothness measure, decided by the invariant ones.
    c3 = Claim("3", "Multiplication makes the loss landscape smoother and more stable",
               "for each pair differing only in a merge (× vs +) and each smoothness measure: paired t-test over "
               "seeds of × minus +; supported if the 95% CI lies on the smoother side of 0, not supported if on "
               f"the other side, else inconclusive (n < {MIN_SEEDS}: inconclusive). Only measures invariant to the "
               f"rescaling symmetries decide; the others are shown. Overall: {COMBINE_RULE}")
    for c in (p for p in pairs if "merge" in p.factor):
        for metric, m in sorted(study.metrics.items()):
            if m.family == "smoothness" and m.better:
                t = test(metric, c)
                if t.n:
                    c3.evidence.append(Evidence(metric, c, t, *_directional(t, better=m.better),
                                                decides=bool(m.invariant)))
    _combine(c3, what="invariant smoothness measure on a pair differing only in a merge")
    claims.append(c3)

    # 4a. FMMNet is at least as accurate as ResNet.
    c4 = Claim("4a", "FMMNet is at least as accurate as ResNet",
               f"residual merge × minus + on test accuracy, paired t-test over seeds (non-inferiority, margin "
               f"{ACCURACY_MARGIN:g}): supported if the 95% CI lower bound > −{ACCURACY_MARGIN:g}, not supported if "
               f"the upper bound < −{ACCURACY_MARGIN:g}; n < {MIN_SEEDS}: inconclusive. Overall: {COMBINE_RULE}")
    for c in (p for p in pairs if p.factor.startswith("residual")):
        t = test("accuracy", c)
        c4.evidence.append(Evidence("accuracy", c, t, *_non_inferior(t)))
    _combine(c4, what="pair of models differing only in the residual merge (resnet vs fmmnet)")
    claims.append(c4)

    # 4b. Attention / multiplication makes CNNs more robust to input noise.
    c5 = Claim("4b", "Attention and multiplication make CNNs more robust to input noise",
               "for each pair (× vs +, attention vs none) and each robustness measure (accuracy retained under "
               "Gaussian input noise, accuracy under noise): paired t-test over seeds; supported if the 95% CI > 0, "
               f"not supported if < 0, else inconclusive (n < {MIN_SEEDS}: inconclusive). Overall: {COMBINE_RULE}")
    for c in pairs:
        for metric, m in sorted(study.metrics.items()):
            if m.family == "robustness" and m.better:
                t = test(metric, c)
                if t.n:
                    c5.evidence.append(Evidence(metric, c, t, *_directional(t, better=m.better)))
    _combine(c5, what="noise-robustness analysis (inputspace mode=noise) on a compared pair")
    claims.append(c5)
    return claims


def fmt(x: float, digits: int = 4) -> str:
    """A number for the report: 4 significant digits, NaN as '—'."""
    if not math.isfinite(x):
        return "—" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    return f"{x:.{digits}g}"
