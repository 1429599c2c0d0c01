"""Data: readers and writers of the raw formats, the synthetic LiDAR generator, conversion, datasets
and augmentations.

``formats`` reads and writes the official formats (Waymo v1 TFRecord, ...); ``synthetic`` generates
format-neutral sequences (a seeded world ray-cast by spinning LiDARs) that the format writers turn
into real-format files.
"""
