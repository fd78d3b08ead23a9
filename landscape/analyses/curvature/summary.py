"""``landscape info`` for curvature files: settings and headline numbers."""

from __future__ import annotations

from landscape.core.summary import row, settings


def summary(file: str) -> list[str]:
    import numpy as np

    from landscape.analyses.curvature.result import Curvature

    r = Curvature.from_file(file)
    lines = settings(r.attrs)
    if len(r) == 0:
        return [*lines, row("measurements", "none yet (none has run)")]
    rows = r.rows
    lines.append(row("measurements", f"{len(r)}, step {int(r.step[0])} .. {int(r.step[-1])}"))
    lam = rows["lambda_max"]
    lines.append(row("λmax", f"first {lam[0]:.6g}, last {lam[-1]:.6g}, max {np.nanmax(lam):.6g}"))
    lines.append(row("2/η", f"{np.nanmin(rows['two_over_lr']):.6g} .. {np.nanmax(rows['two_over_lr']):.6g}"))
    if r.is_adam:
        p = rows["precond_lambda_max"]
        lines.append(row("λmax(P⁻¹H) (Adam)", f"first {p[0]:.6g}, last {p[-1]:.6g}, max {np.nanmax(p):.6g}; "
                         f"threshold (2+2β₁)/((1−β₁)η) last {rows['precond_threshold'][-1]:.6g}"))
    eos = r.edge_of_stability()
    if eos.reached_step is None:
        lines.append(row("edge of stability", "never reached 0.9 × the threshold"))
    else:
        lines.append(row("edge of stability", f"reached 0.9 × threshold at step {eos.reached_step}; "
                         f"{eos.within}/{eos.late} late measurements within ±10% ({eos.fraction:.0%}), "
                         f"median λ/threshold {eos.median_ratio:.3g}"))
    if r.has_trace:
        lines.append(row("trace (Hutch++)", f"first {rows['trace'][0]:.6g}, last {rows['trace'][-1]:.6g} "
                         f"± {rows['trace_stderr'][-1]:.3g}"))
    bad = int((rows["lambda_converged"] == 0).sum())
    lines.append(row("HVPs", f"{r.n_hvp} in all; λmax {rows['lambda_matvecs'].mean():.3g} per measurement"
                     + (f"; {bad} not converged to tol" if bad else "")))
    return lines
