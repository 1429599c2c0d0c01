"""Object classes of the synthetic world, their sizes, and their Waymo / nuScenes names.

=============  ==========  =========================  ==========================================
class          Waymo type  nuScenes category          size dx x dy x dz (m): mean, [min, max]
=============  ==========  =========================  ==========================================
car            VEHICLE=1   vehicle.car                4.6 x 1.9 x 1.6, [3.6-5.6, 1.6-2.2, 1.3-2.1]
truck          VEHICLE=1   vehicle.truck              6-10 x 2.2-2.6 x 2.8-3.6
bus            VEHICLE=1   vehicle.bus.rigid          10-12.5 x 2.45-2.65 x 3.0-3.4
pedestrian     PEDESTRIAN  human.pedestrian.adult     0.8 x 0.8 x 1.75, [0.5-1.1, 0.5-1.1, 1.4-2.0]
cyclist        CYCLIST=4   vehicle.bicycle            1.8 x 0.8 x 1.75, [1.5-2.1, 0.6-1.0, 1.5-2.0]
sign           SIGN=3      (none: not annotated)      0.1 x 0.7 x 0.7, [0.06-0.14, 0.5-0.9, 0.5-0.9]
barrier        (none: 0)   movable_object.barrier     2.0 x 0.5 x 1.0, [1.5-2.5, 0.4-0.6, 0.8-1.1]
traffic_cone   (none: 0)   movable_object.trafficcone 0.4 x 0.4 x 0.8, [0.3-0.5, 0.3-0.5, 0.6-1.0]
=============  ==========  =========================  ==========================================

Waymo type 0 (TYPE_UNKNOWN) means Waymo does not label the class: its writer omits those
objects; a nuScenes category of None likewise (signs). Cyclists carry the nuScenes attribute
``cycle.with_rider``; moving vehicles ``vehicle.moving``, others ``vehicle.parked``; pedestrians
``pedestrian.moving`` or ``pedestrian.standing`` (see ``nuscenes_attribute``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WAYMO_TYPE_NAMES = {0: "TYPE_UNKNOWN", 1: "TYPE_VEHICLE", 2: "TYPE_PEDESTRIAN", 3: "TYPE_SIGN", 4: "TYPE_CYCLIST"}


@dataclass(frozen=True)
class ObjectClass:
    """One class: names, and the size distribution ``N(mean, std)`` clipped to ``[low, high]``
    per dimension ``(dx, dy, dz)`` in metres (for ``uniform``, uniform in ``[low, high]``)."""

    name: str
    waymo_type: int
    nuscenes_category: str | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    low: tuple[float, float, float]
    high: tuple[float, float, float]
    uniform: tuple[bool, bool, bool] = (False, False, False)

    def sample_size(self, rng: np.random.Generator) -> np.ndarray:
        """``(3,)`` float64 ``(dx, dy, dz)`` in metres."""
        out = np.empty(3)
        for k in range(3):
            if self.uniform[k]:
                out[k] = rng.uniform(self.low[k], self.high[k])
            else:
                out[k] = np.clip(rng.normal(self.mean[k], self.std[k]), self.low[k], self.high[k])
        return out


CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("car", 1, "vehicle.car", (4.6, 1.9, 1.6), (0.45, 0.1, 0.15), (3.6, 1.6, 1.3), (5.6, 2.2, 2.1)),
    ObjectClass("truck", 1, "vehicle.truck", (8.0, 2.4, 3.2), (0.0, 0.1, 0.0), (6.0, 2.2, 2.8), (10.0, 2.6, 3.6),
                (True, False, True)),
    ObjectClass("bus", 1, "vehicle.bus.rigid", (11.5, 2.55, 3.2), (0.0, 0.05, 0.0), (10.0, 2.45, 3.0),
                (12.5, 2.65, 3.4), (True, False, True)),
    ObjectClass("pedestrian", 2, "human.pedestrian.adult", (0.8, 0.8, 1.75), (0.12, 0.12, 0.1), (0.5, 0.5, 1.4),
                (1.1, 1.1, 2.0)),
    ObjectClass("cyclist", 4, "vehicle.bicycle", (1.8, 0.8, 1.75), (0.1, 0.08, 0.08), (1.5, 0.6, 1.5),
                (2.1, 1.0, 2.0)),
    ObjectClass("sign", 3, None, (0.1, 0.7, 0.7), (0.02, 0.0, 0.0), (0.06, 0.5, 0.5), (0.14, 0.9, 0.9),
                (False, True, True)),
    ObjectClass("barrier", 0, "movable_object.barrier", (2.0, 0.5, 1.0), (0.0, 0.05, 0.0), (1.5, 0.4, 0.8),
                (2.5, 0.6, 1.1), (True, False, True)),
    ObjectClass("traffic_cone", 0, "movable_object.trafficcone", (0.4, 0.4, 0.8), (0.04, 0.04, 0.0),
                (0.3, 0.3, 0.6), (0.5, 0.5, 1.0), (False, False, True)),
)  # fmt: skip

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
CLASS_INDEX: dict[str, int] = {c.name: i for i, c in enumerate(CLASSES)}
WAYMO_TYPES = np.array([c.waymo_type for c in CLASSES], dtype=np.int8)
NUSCENES_CATEGORIES: tuple[str | None, ...] = tuple(c.nuscenes_category for c in CLASSES)


def nuscenes_attribute(class_name: str, moving: bool) -> str | None:
    """The nuScenes attribute name for an object of ``class_name`` (None where the category has
    no attribute: barriers, cones, signs)."""
    if class_name in ("car", "truck", "bus"):
        return "vehicle.moving" if moving else "vehicle.parked"
    if class_name == "pedestrian":
        return "pedestrian.moving" if moving else "pedestrian.standing"
    if class_name == "cyclist":
        return "cycle.with_rider"
    return None
