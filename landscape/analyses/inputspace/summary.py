"""``landscape info`` for input-space files: settings and headline numbers."""

from __future__ import annotations

from landscape.core.summary import row, settings, stat_line


def summary(file: str) -> list[str]:
    import numpy as np

    from landscape.analyses.inputspace.schema import read_inputspace

    attrs, arrays = read_inputspace(file)
    lines = settings(attrs)
    mode = attrs["mode"]
    if mode == "noise":
        acc, loss = arrays["acc"], arrays["loss"]
        lines.append(row("noise robustness", f"accuracy and loss, mean over {acc.shape[0]} draw(s)"))
        for k, sigma in enumerate(arrays["sigma"]):
            lines.append(f"    σ={sigma:<26.6g} accuracy {acc[:, k].mean():.6g} (min {acc[:, k].min():.6g}), "
                         f"loss {loss[:, k].mean():.6g}")
        return lines
    grid = arrays["radius" if mode == "around" else "alpha"]
    what = "curves" if mode == "around" else "pairs"
    lines.append(row(f"{'radius' if mode == 'around' else 'α'} grid",
                      f"{grid[0]:.6g} .. {grid[-1]:.6g}, {grid.size} points"))
    stats = ["total_variation", "max_second_diff", "lipschitz", "flips"]
    if mode == "between":
        stats.append("chord_deviation")
        same = np.asarray(arrays["same_class"], dtype=bool)
        lines.append(row("pairs", f"{same.size} ({int(same.sum())} same class)"))
    for stat in stats:
        lines.append(stat_line(stat, arrays[stat], what))
    if "jacobian_norm" in arrays:
        lines.append(stat_line("jacobian_norm ‖∂f/∂x‖_F", arrays["jacobian_norm"],
                                "samples" if mode == "around" else "endpoints"))
    return lines
