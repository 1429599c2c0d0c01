"""Scattered synthetic LiDAR inputs (no ray casting): a Waymo-scale spinning-LiDAR frame whose
points are drawn with a 1/r range density (``make_lidar_frame``) and clustered random boxes
(``make_boxes``). Cheap and deterministic for a seed; the ops, grouping and attention benchmarks and
``tools/visualize.py --synthetic`` use them."""

from __future__ import annotations

import math

import torch


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _log_uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """Samples with density ~ 1/r on [lo, hi]."""
    return lo * (hi / lo) ** torch.rand(n, generator=gen)


def _polar(r: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    azimuth = _uniform(r.shape[0], -math.pi, math.pi, gen)
    return r * torch.cos(azimuth), r * torch.sin(azimuth)


GROUND_Z = -1.8


def _ground_points(n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 3)`` ground returns: range density ~ 1/r on [2, 80] m, z around -1.8 m."""
    x, y = _polar(_log_uniform(n, 2.0, 80.0, gen), gen)
    z = GROUND_Z + 0.03 * torch.randn(n, generator=gen)
    return torch.stack([x, y, z], dim=1)


def _object_boxes(num_objects: int, gen: torch.Generator) -> torch.Tensor:
    """``(M, 7)`` boxes standing on the ground: cars, pedestrians and cyclists, heights <= ~2 m."""
    x, y = _polar(_log_uniform(num_objects, 3.0, 75.0, gen), gen)
    templates = torch.tensor([[4.5, 2.0, 1.6], [0.8, 0.8, 1.8], [1.8, 0.8, 1.7]])
    kind = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), num_objects, replacement=True, generator=gen)
    dims = templates[kind] * _uniform(num_objects, 0.85, 1.15, gen)[:, None]
    dims[:, 2] = dims[:, 2].clamp(max=2.1)
    heading = _uniform(num_objects, -math.pi, math.pi, gen)
    z = GROUND_Z + dims[:, 2] / 2
    return torch.cat([torch.stack([x, y, z], dim=1), dims, heading[:, None]], dim=1)


def _object_points(n: int, boxes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``(n, 3)`` returns on the vertical faces of ``boxes``; near objects get more (~ 1/r^2)."""
    weight = 1.0 / boxes[:, :2].norm(dim=1).clamp(min=1.0) ** 2
    owner = torch.multinomial(weight, n, replacement=True, generator=gen)
    b = boxes[owner]
    local = (torch.rand(n, 3, generator=gen) - 0.5) * b[:, 3:6]
    on_x_face = torch.rand(n, generator=gen) < 0.5
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -0.5, 0.5)
    axis = torch.where(on_x_face, 0, 1)
    local[torch.arange(n), axis] = sign * b[torch.arange(n), 3 + axis]
    c, s = torch.cos(b[:, 6]), torch.sin(b[:, 6])
    x = b[:, 0] + local[:, 0] * c - local[:, 1] * s
    y = b[:, 1] + local[:, 0] * s + local[:, 1] * c
    return torch.stack([x, y, b[:, 2] + local[:, 2]], dim=1)


def _outside_points(n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 3)`` returns outside the detection range: half beyond 80 m, half above 4 m."""
    far = n // 2
    x, y = _polar(_uniform(far, 80.0, 150.0, gen), gen)
    far_pts = torch.stack([x, y, GROUND_Z + _uniform(far, 0.0, 3.0, gen)], dim=1)
    x, y = _polar(_log_uniform(n - far, 3.0, 60.0, gen), gen)
    high_pts = torch.stack([x, y, _uniform(n - far, 4.0, 12.0, gen)], dim=1)
    return torch.cat([far_pts, high_pts])


def make_lidar_frame(
    num_points: int = 180_000,
    seed: int = 0,
    num_objects: int = 300,
    object_fraction: float = 0.35,
    outside_fraction: float = 0.03,
) -> torch.Tensor:
    """A synthetic Waymo-scale spinning-LiDAR frame: ``(N, 5)`` float32 ``x, y, z, intensity,
    elongation``, in scan (azimuth) order, deterministic for ``seed``.

    Most points lie on a ground plane (z ~ -1.8 m) with range density falling as 1/r between 2 and
    80 m; ``object_fraction`` lie on the faces of ``num_objects`` random box objects; and
    ``outside_fraction`` lie outside the usual detection range (beyond 80 m or above 4 m) so that
    range clipping is exercised.
    """
    gen = torch.Generator().manual_seed(seed)
    n_obj = int(num_points * object_fraction)
    n_out = int(num_points * outside_fraction)
    xyz = torch.cat([
        _ground_points(num_points - n_obj - n_out, gen),
        _object_points(n_obj, _object_boxes(num_objects, gen), gen),
        _outside_points(n_out, gen),
    ])  # fmt: skip
    intensity = torch.rand(num_points, generator=gen) ** 2
    elongation = 0.3 * torch.rand(num_points, generator=gen)
    points = torch.cat([xyz, intensity[:, None], elongation[:, None]], dim=1)
    order = torch.argsort(torch.atan2(points[:, 1], points[:, 0]))
    return points[order].to(torch.float32).contiguous()


def make_boxes(num_boxes: int, seed: int = 0, num_clusters: int = 25, spread: float = 2.0) -> torch.Tensor:
    """``(N, 7)`` float32 random boxes: centres in +-50 m, clustered (``spread`` metres around
    ``num_clusters`` cluster centres) so that a realistic fraction overlaps; sizes 0.5-5 m;
    random heading."""
    gen = torch.Generator().manual_seed(seed)
    centres = _uniform(2 * num_clusters, -45.0, 45.0, gen).reshape(num_clusters, 2)
    owner = torch.randint(num_clusters, (num_boxes,), generator=gen)
    xy = (centres[owner] + spread * torch.randn(num_boxes, 2, generator=gen)).clamp(-50.0, 50.0)
    dims = torch.stack([_uniform(num_boxes, 0.5, 5.0, gen), _uniform(num_boxes, 0.5, 5.0, gen),
                        _uniform(num_boxes, 0.5, 3.0, gen)], dim=1)  # fmt: skip
    z = GROUND_Z + dims[:, 2] / 2
    heading = _uniform(num_boxes, -math.pi, math.pi, gen)
    return torch.cat([xy, z[:, None], dims, heading[:, None]], dim=1)
