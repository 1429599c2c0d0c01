"""Sparse-convolution weight layouts of the spconv versions, their detection and conversion.

A 3D sparse convolution with kernel ``(k1, k2, k3)`` (in ``(z, y, x)`` order), ``C`` input and ``K``
output channels stores its weight as a 5-D tensor whose axis order depends on the spconv version
that wrote the checkpoint:

* ``RSCK``: ``(k1, k2, k3, C, K)``: spconv 1.x;
* ``RSKC``: ``(k1, k2, k3, K, C)``: spconv 2.x with the native algorithm;
* ``KRSC``: ``(K, k1, k2, k3, C)``: spconv 2.x with the implicit-GEMM algorithms (its default), and
  the layout of pointformer's models.

Shapes alone cannot always tell the layouts apart (``RSCK`` and ``RSKC`` agree whenever ``C == K``),
and converting one tensor by its shape alone silently leaves such a tensor transposed (loading
spconv 1.x weights by shape does exactly that on the ``C == K`` layers). So the layout is decided once
per checkpoint, from every sparse-conv weight together: the layouts consistent with all of them,
which must be exactly one, else the user names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

LAYOUTS = ("KRSC", "RSKC", "RSCK")
SPCONV_VERSIONS = {"KRSC": "spconv 2.x (implicit GEMM)", "RSKC": "spconv 2.x (native)", "RSCK": "spconv 1.x"}

# Permutation from each layout to KRSC, and back.
_TO_KRSC = {"KRSC": (0, 1, 2, 3, 4), "RSKC": (3, 0, 1, 2, 4), "RSCK": (4, 0, 1, 2, 3)}
_FROM_KRSC = {"KRSC": (0, 1, 2, 3, 4), "RSKC": (1, 2, 3, 0, 4), "RSCK": (1, 2, 3, 4, 0)}


class LayoutError(ValueError):
    """The sparse-conv weights of a checkpoint fit no layout, or several."""


def _check(layout: str) -> str:
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown spconv weight layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return layout


def to_krsc(weight: torch.Tensor, layout: str) -> torch.Tensor:
    """``weight`` in ``layout`` as ``(K, k1, k2, k3, C)`` (contiguous)."""
    return weight.permute(_TO_KRSC[_check(layout)]).contiguous()


def from_krsc(weight: torch.Tensor, layout: str) -> torch.Tensor:
    """A ``(K, k1, k2, k3, C)`` weight in ``layout`` (contiguous)."""
    return weight.permute(_FROM_KRSC[_check(layout)]).contiguous()


def fitting_layouts(shape: Sequence[int], krsc_shape: Sequence[int]) -> set[str]:
    """The layouts in which a tensor of ``shape`` is a weight of KRSC shape ``krsc_shape``."""
    if len(shape) != 5 or len(krsc_shape) != 5:
        return set()
    fits = set()
    for layout, perm in _FROM_KRSC.items():
        if tuple(shape) == tuple(krsc_shape[i] for i in perm):
            fits.add(layout)
    return fits


def detect_layout(weights: Iterable[tuple[str, Sequence[int], Sequence[int]]]) -> str | None:
    """The one layout consistent with every ``(name, shape, expected KRSC shape)``; None when there
    are no sparse-conv weights. Raises ``LayoutError`` naming the tensors when none or several fit."""
    candidates = set(LAYOUTS)
    seen = []
    for name, shape, krsc in weights:
        fits = fitting_layouts(shape, krsc)
        seen.append((name, tuple(shape), tuple(krsc), fits))
        candidates &= fits
    if not seen:
        return None
    if len(candidates) == 1:
        return candidates.pop()
    if not candidates:
        bad = [f"{n} {list(s)} (fits {sorted(f) or 'none'}; KRSC expected {list(k)})" for n, s, k, f in seen]
        raise LayoutError(
            "the sparse-convolution weights fit no single spconv layout (KRSC, RSKC, RSCK): " + "; ".join(bad[:8])
        )
    raise LayoutError(
        f"the sparse-convolution weights fit several spconv layouts ({', '.join(sorted(candidates))}: every one "
        "has as many input as output channels); name the one that wrote the checkpoint with --spconv-layout "
        f"({', '.join(f'{k} = {v}' for k, v in SPCONV_VERSIONS.items())})"
    )
