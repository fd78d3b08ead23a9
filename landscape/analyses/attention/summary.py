"""``landscape info`` for attention files: settings and headline numbers."""

from __future__ import annotations

from typing import Any

from landscape.core.summary import row, settings

_CORRELATIONS = ("spearman", "spearman_p", "kendall", "kendall_p")


def _correlation(values: dict[str, Any], prefix: str = "") -> str:
    v = [float(values[prefix + k]) for k in _CORRELATIONS]
    return f"Spearman ρ {v[0]:.6g} (p {v[1]:.3g}), Kendall τ {v[2]:.6g} (p {v[3]:.3g})"


def summary(file: str) -> list[str]:
    from landscape.analyses.attention.schema import read_attention

    attrs, modules = read_attention(file)
    lines = settings(attrs, skip=(*_CORRELATIONS, *("within_" + k for k in _CORRELATIONS)))
    lines.append(row("per module", "weight vs importance (kind, channels)"))
    for m in modules:
        lines.append(f"    {m['name']:<28} {_correlation(m)} ({m['kind']}, {len(m['importance'])} channels)")
    lines.append(row("pooled", _correlation(attrs)))
    if "within_spearman" in attrs:
        lines.append(row("pooled_within (module ranks)", _correlation(attrs, "within_")))
    return lines
