"""Data: readers and writers of the raw formats, the synthetic LiDAR generator, conversion, datasets
and augmentations.

``formats`` reads and writes the official formats (Waymo v1 TFRecord, ...); ``synthetic`` generates
format-neutral sequences (a seeded world ray-cast by spinning LiDARs) that the format writers turn
into real-format files.

Training data over the converted layout (``layout``): ``dataset.LayoutDataset`` (config
``dataset.DatasetConfig``) yields ``sample.FrameSample``; ``points`` loads frames with their sweeps
and encodes point features; ``gt_sampling`` (copy-paste), ``augment`` (global random transforms,
``Compose``) and ``processing`` (class, range and min-points filters) transform samples;
``collate.collate_frames`` batches them into a ``collate.FrameBatch``.
"""
