"""FlatFormer's sinusoidal absolute 2D positional encoding."""

from __future__ import annotations

import torch


def sinusoidal_position_encoding_2d(
    coords: torch.Tensor, channels: int, temperature: float = 10000.0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Sinusoidal encoding of each voxel's global (x, y) cell index (FlatFormer, not window-relative).

    With ``L = (channels // 4) * 2`` frequencies per axis and ``f_j = temperature ** (2 * (j // 2) / L)``,
    the x part is ``[sin(x / f_0), cos(x / f_0), sin(x / f_2), cos(x / f_2), ...]`` (``L`` channels,
    sin/cos interleaved), the y part the same for y; the encoding is ``[x part, y part]``, zero-padded
    to ``channels`` when ``channels`` is not a multiple of 4. z is not encoded (pillars).

    Args:
        coords: ``(N, 4)`` integer ``(batch, z, y, x)`` cell indices.
        channels: ``C``, the feature width.
        temperature: the frequency base.
        dtype: output dtype (computed in float32).

    Returns:
        ``(N, C)`` tensor on ``coords``' device.
    """
    length = (channels // 4) * 2
    j = torch.arange(length, dtype=torch.float32, device=coords.device)
    inv_freq = float(temperature) ** (2 * torch.div(j, 2, rounding_mode="floor") / length)
    parts = []
    for axis in (3, 2):  # x, then y
        angle = coords[:, axis].to(torch.float32)[:, None] / inv_freq[None, :]
        parts.append(torch.stack([angle[:, 0::2].sin(), angle[:, 1::2].cos()], dim=-1).flatten(1))
    pe = torch.cat(parts, dim=1)
    gap = channels - pe.shape[1]
    if gap:
        pe = torch.cat([pe, pe.new_zeros(pe.shape[0], gap)], dim=1)
    return pe.to(dtype)
