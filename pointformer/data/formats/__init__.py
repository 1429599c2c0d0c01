"""Readers and writers of raw dataset formats, implemented without the vendors' toolkits.

``tfrecord`` (TFRecord framing with CRC-32C), ``protobuf`` (a small declarative wire-format
codec), ``waymo_proto`` (the Waymo v1 messages with their official field numbers), ``range_image``
(range image -> points), ``waymo_frame`` (the typed frames readers yield), ``waymo_v1``
(reading and writing Waymo v1 TFRecords and metrics ``Objects`` files) and ``waymo_v2`` (reading
and writing Waymo v2 parquet components; the same typed frames).
"""

from pointformer.data.formats.errors import DataFormatError

__all__ = ["DataFormatError"]
