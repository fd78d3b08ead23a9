"""``landscape info`` for Hessian files: settings and headline numbers."""

from __future__ import annotations

from landscape.core.summary import row, settings


def summary(file: str) -> list[str]:
    import numpy as np

    from landscape.analyses.hessian.schema import read_hessian

    r = read_hessian(file)
    lines = settings(r["attrs"])
    if "eigenvalues" in r:
        which = r["attrs"].get("which", "LA")
        residuals = r.get("residuals", np.full(len(r["eigenvalues"]), np.nan))
        for i, (ev, res) in enumerate(zip(r["eigenvalues"], residuals), 1):
            lines.append(row(f"eigenvalue {i} ({which})", f"{ev:.8g} (residual ‖Hv − λv‖ {res:.3g})"))
    if "trace" in r:
        lines.append(row("trace", f"{r['trace']:.8g} ± {r['trace_stderr']:.3g} (stderr)"))
    if "density" in r:
        d = r["density"]
        nodes, weights = np.asarray(d["nodes"]), np.asarray(d["weights"])
        total = float(weights.sum())  # 1 for a complete SLQ run; the masses below are fractions of it
        top = float(np.abs(nodes).max())
        negative = float(weights[nodes < 0].sum()) / total
        near_zero = float(weights[np.abs(nodes) <= 1e-2 * top].sum()) / total
        lines.append(row("density support", f"{nodes.min():.8g} .. {nodes.max():.8g} (Ritz values, "
                                             f"{nodes.shape[0]} vector(s) × {nodes.shape[-1]} steps)"))
        lines.append(row("density mass", f"negative {negative:.6g}; near zero {near_zero:.6g} (|λ| ≤ 0.01·max|λ|); "
                                          f"∫ density {np.trapezoid(d['values'], d['grid']):.6g}"))
    if "per_layer" in r:
        lines.append(row("per layer", f"{'top eigenvalue':>16} {'trace':>16} ± stderr"))
        for name, values in r["per_layer"].items():
            top_ev = float(np.atleast_1d(values["eigenvalues"])[0]) if np.size(values["eigenvalues"]) else np.nan
            se = float(values["trace_stderr"]) if "trace_stderr" in values else float("nan")
            lines.append(f"    {name:<28} {top_ev:>16.8g} {float(values['trace']):>16.8g} ± {se:.3g}")
    if "per_block" in r:
        pb = r["per_block"]
        by = pb["settings"].get("block_by", "?")
        js = "n/a (one block)" if not np.isfinite(pb["js_mean"]) else f"{pb['js_mean']:.4f}"
        lines.append(row("per block", f"{len(pb['blocks'])} blocks by {by}; mean Jensen-Shannon distance {js} "
                                      f"(densities on one grid, σ {pb['sigma']:.3g})"))
        lines.append(f"    {'block':<28} {'size':>9} {'λmax':>16} {'trace':>16} ± stderr")
        for name, b in pb["blocks"].items():
            top_ev = float(np.atleast_1d(b["eigenvalues"])[0]) if np.size(b["eigenvalues"]) else np.nan
            lines.append(f"    {name:<28} {b['size']:>9} {top_ev:>16.8g} {b['trace']:>16.8g} ± {b['trace_stderr']:.3g}")
    return lines
