"""Synthetic LiDAR: a seeded street world ray-cast by spinning multi-beam sensors.

Format-neutral: range images per laser (Waymo pixel geometry), ego poses, and labels in the
vehicle frame. The Waymo (v1 TFRecord, v2 parquet) and nuScenes writers build on this API.

``generate_sequence(seed, num_frames, preset)`` is the one-call entry; ``lidar`` holds the sensor
models (``LidarSpec`` and presets), ``scene`` the world, ``raycast`` the ray caster, ``labels`` the
per-frame labels and ``classes`` the object classes and their mapping to Waymo / nuScenes.
``scatter`` is the cheap alternative without ray casting: points drawn with a 1/r range density
and random boxes (``make_lidar_frame``, ``make_boxes``).
"""

from pointformer.data.synthetic.classes import CLASS_NAMES, CLASSES, ObjectClass
from pointformer.data.synthetic.labels import FrameLabels, count_points_in_boxes
from pointformer.data.synthetic.lidar import NO_RETURN, LidarSpec, nuscenes_lidars, preset_lidars, waymo_lidars
from pointformer.data.synthetic.raycast import Scan, cast_rays, cast_scan
from pointformer.data.synthetic.scene import HeightField, Primitives, Road, Scene, build_scene
from pointformer.data.synthetic.sequence import SyntheticFrame, SyntheticSequence, generate_sequence

__all__ = [
    "CLASSES",
    "CLASS_NAMES",
    "NO_RETURN",
    "FrameLabels",
    "HeightField",
    "LidarSpec",
    "ObjectClass",
    "Primitives",
    "Road",
    "Scan",
    "Scene",
    "SyntheticFrame",
    "SyntheticSequence",
    "build_scene",
    "cast_rays",
    "cast_scan",
    "count_points_in_boxes",
    "generate_sequence",
    "nuscenes_lidars",
    "preset_lidars",
    "waymo_lidars",
]
