"""Data: dataset formats, the synthetic LiDAR generator, conversion, datasets and augmentations.

``synthetic`` generates format-neutral sequences (a seeded world ray-cast by spinning LiDARs);
the format writers and readers build on it.
"""
