"""``landscape info`` for predictiveness files: settings and headline numbers."""

from __future__ import annotations

from landscape.core.summary import row, settings


def summary(file: str) -> list[str]:
    import numpy as np

    from landscape.analyses.predictiveness.schema import read

    data = read(file)
    lines = settings(data.attrs)
    axis = data.attrs.get("x_axis", "step")
    if len(data.step) == 0:
        return [*lines, row("probes", "none yet (no probe has run)")]
    lines.append(row("probes", f"{len(data.step)}, {axis} {int(data.step[0])} .. {int(data.step[-1])}"))
    beta = data.beta
    finite = beta[np.isfinite(beta)]
    text = (f"final {beta[-1]:.6g}, median {np.median(finite):.6g}, max {finite.max():.6g}" if finite.size
            else "undefined (every gradient was zero)")
    sizes = np.asarray(data.attrs.get("batch_sizes", []), dtype=np.float64).reshape(-1)
    if finite.size and sizes.size == beta.size and np.isfinite(beta).all():
        text += f"; batch-weighted mean {np.average(beta, weights=sizes):.6g}"
    lines.append(row("β (effective smoothness)", text))
    lines.append(row("loss L(W) at the probes", f"{data.train_loss.min():.6g} .. {data.train_loss.max():.6g}"))
    lines.append(row("‖g‖ at the probes", f"{data.grad_norm.min():.6g} .. {data.grad_norm.max():.6g}"))
    change = data.loss - data.train_loss[:, None]
    lines.append(row("per η", "loss change L(W − ηg) − L(W) min .. max; ‖∇L(W − ηg) − g‖ min .. max"))
    for e, eta in enumerate(data.eta):
        lines.append(f"    η={eta:<26.6g} ΔL {change[:, e].min():.6g} .. {change[:, e].max():.6g}; "
                     f"grad-diff {data.grad_diff[:, e].min():.6g} .. {data.grad_diff[:, e].max():.6g}")
    return lines
