"""Flat-vector arithmetic for the Krylov and trace algorithms: work vectors stay in the operator's dtype (float32
for a float32 model), scalars are accumulated in float64.

A float32 dot product over 10⁷ entries loses about ``√n·eps₃₂ ≈ 4e-4`` of its relative accuracy in the worst case;
converting whole vectors to float64 would double the memory of every basis. So the products below convert
``CHUNK`` entries at a time: the accuracy of float64 accumulation at the cost of one ``(rows, CHUNK)`` float64
block (2 MiB per row at most).
"""

from __future__ import annotations

import torch

CHUNK = 1 << 18  # entries converted to float64 at a time


def dot64(a: torch.Tensor, b: torch.Tensor) -> float:
    """``a · b`` accumulated in float64."""
    if a.dtype == torch.float64 and b.dtype == torch.float64:
        return float(a @ b)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for start in range(0, a.numel(), CHUNK):
        total += a[start:start + CHUNK].double() @ b[start:start + CHUNK].double()
    return float(total)


def coefficients64(basis: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``basis @ w`` (one float64 coefficient per row of ``basis``), accumulated in float64."""
    if basis.dtype == torch.float64 and w.dtype == torch.float64:
        return basis @ w
    out = torch.zeros(basis.shape[0], dtype=torch.float64, device=w.device)
    for start in range(0, w.numel(), CHUNK):
        out += basis[:, start:start + CHUNK].double() @ w[start:start + CHUNK].double()
    return out


def orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``w ← w − basisᵀ h`` in place against orthonormal rows (two classical Gram-Schmidt passes); returns the
    float64 coefficients ``h``."""
    if basis.shape[0] == 0:
        return torch.zeros(0, dtype=torch.float64, device=w.device)
    h = coefficients64(basis, w)
    w -= basis.T @ h.to(w.dtype)
    h2 = coefficients64(basis, w)
    w -= basis.T @ h2.to(w.dtype)
    return h + h2


def combine_rows_(basis: torch.Tensor, coeffs: torch.Tensor) -> None:
    """``basis[:r] ← coeffs @ basis[:c]`` in place, for ``coeffs`` of shape (r, c) with r ≤ c (a thick restart),
    a column block at a time so no second basis is allocated."""
    r = coeffs.shape[0]
    c = coeffs.to(basis.dtype)
    for start in range(0, basis.shape[1], CHUNK):
        block = basis[: coeffs.shape[1], start:start + CHUNK]
        basis[:r, start:start + CHUNK] = c @ block
