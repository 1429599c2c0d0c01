"""Readers and writers of raw dataset formats, implemented without the vendors' toolkits.

``tfrecord`` (TFRecord framing with CRC-32C), ``protobuf`` (a small declarative wire-format
codec), ``waymo_proto`` (the Waymo v1 messages with their official field numbers), ``range_image``
(range image -> points), ``waymo_frame`` (the typed frames readers yield), ``waymo_v1``
(reading and writing Waymo v1 TFRecords and metrics ``Objects`` files), ``waymo_v2`` (reading
and writing Waymo v2 parquet components; the same typed frames), ``nuscenes_tables`` (the 13
nuScenes JSON tables, quaternions, class names and splits), ``nuscenes`` (LIDAR_TOP multi-sweep
points and boxes per sample, without the devkit) and ``nuscenes_writer`` (synthetic sequences as a
v1.0-mini-shaped dataset).
"""

from pointformer.data.formats.errors import DataFormatError

__all__ = ["DataFormatError"]
