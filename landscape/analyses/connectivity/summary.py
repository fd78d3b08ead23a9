"""``landscape info`` for connectivity files: settings and the headline numbers (barriers, alignment, curve)."""

from __future__ import annotations

from landscape.core.summary import row, settings


def summary(file: str) -> list[str]:
    from landscape.analyses.connectivity.schema import read

    r = read(file)
    lines = settings(r["attrs"])
    b = {k: v for k, v in r["endpoint_b"].items() if v != "null"}
    lines.append(row("model B", f"{b.get('checkpoint') or b.get('model')} (weights "
                                f"{str(b.get('weights_sha256'))[:16]}…)"))
    for name, per_split in r["barriers"].items():
        for split, v in per_split.items():
            ends = r["paths"][name][f"{split}_loss"]
            lines.append(row(f"barrier {name} ({split})",
                             f"{v['height']:.6g} ± {v['stderr']:.3g} (stderr) at t={v['t']:.3g}; max loss "
                             f"{v['max_loss']:.6g}; ends {ends[0]:.6g}, {ends[-1]:.6g}"))
    if "alignment" in r:
        a = r["alignment"]
        lines.append(row("alignment", f"{a.get('kind')}: {len(a['perms'])} permutations, {a.get('sweeps')} sweeps "
                                      f"({'converged' if a.get('converged') else 'not converged'}); Σ⟨θ_A, π(θ_B)⟩ "
                                      f"{a.get('objective_before'):.6g} → {a.get('objective_after'):.6g}"))
    if "curve" in r:
        h = r["curve"]["history"]
        lines.append(row("curve training", f"{r['curve'].get('kind')}, {len(h)} epochs, train loss "
                                           f"{h[0]:.6g} → {h[-1]:.6g}" if len(h) else "not trained"))
    if "plane" in r:
        p = r["plane"]
        lines.append(row("plane", f"{p['loss'].shape[0]}×{p['loss'].shape[1]} points, loss "
                                  f"{p['loss'].min():.6g} .. {p['loss'].max():.6g}; bend at "
                                  f"({p['points'][2, 0]:.3g}, {p['points'][2, 1]:.3g})"))
    return lines
