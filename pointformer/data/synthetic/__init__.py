"""Synthetic LiDAR: a seeded street world ray-cast by spinning multi-beam sensors.

Format-neutral: range images per laser (Waymo pixel geometry), ego poses, and labels in the
vehicle frame. The Waymo (v1 TFRecord, v2 parquet) and nuScenes writers build on this API.

``generate_sequence(seed, num_frames, preset)`` is the one-call entry; ``lidar`` holds the sensor
models (``LidarSpec`` and presets), ``scene`` the world, ``raycast`` the ray caster, ``labels`` the
per-frame labels and ``classes`` the object classes and their mapping to Waymo / nuScenes.
"""
