"""``landscape info`` for sharpness files: settings, then each measure (with how its ascent ended) and the
invariance table."""

from __future__ import annotations

from landscape.core.summary import row, settings


def summary(file: str) -> list[str]:
    import numpy as np

    from landscape.analyses.sharpness.schema import read_sharpness

    r = read_sharpness(file)
    lines = settings(r.attrs)
    lines.append(row("loss L(w)", f"{r.loss:.8g}"))
    steps = r.attrs.get("steps")
    for name, m in r.measures.items():
        if name.startswith("worst"):
            last = np.asarray(m["last_improvement"])
            for i, rho in enumerate(r.rho):
                lines.append(row(f"{name} ρ={rho:g}", f"{float(m['value'][i]):.6g} (last improvement at step "
                                                       f"{int(last[i].max())} of {steps}"
                                                       + (f", max over {last.shape[1]} subsets)"
                                                          if last.shape[1] > 1 else ")")))
        elif name.startswith("average"):
            for i, sigma in enumerate(r.sigma):
                lines.append(row(f"{name} σ={sigma:g}", f"{float(m['value'][i]):.6g} ± "
                                                         f"{float(m['stderr'][i]):.3g} (stderr)"))
        else:
            lines.append(row(name, f"σ = {float(m['sigma']):.6g} (bracket to {float(m['upper']):.6g}; rise there "
                                   f"{float(m['rise']):.4g} ± {float(m['stderr']):.2g}, target "
                                   f"{r.attrs.get('pac_target')})"))
    inv = r.invariance
    if inv is not None:
        lines.append(row("invariance (α)", f"{inv.alpha:g}; relative change |Δ|/|value| per rescaling"))
        for t, (name, desc) in enumerate(zip(inv.transforms, inv.descriptions)):
            lines.append(row(f"  {name}", f"{desc}; outputs differ by {inv.output_diff[t]:.3g}"))
        change = inv.relative_change()
        for j, measure in enumerate(inv.measures):
            moves = ", ".join(f"{c:.3g}" for c in change[:, j])
            lines.append(row(f"  {measure}", f"{inv.values[0, j]:.6g} -> moves {moves}"))
        for text in inv.rejected:
            lines.append(row("  rejected", text))
    return lines
