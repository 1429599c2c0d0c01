"""Protobuf wire codec: spec encodings byte for byte, round trips, unknown fields, malformed input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pointformer.data.formats import DataFormatError
from pointformer.data.formats import waymo_proto as pb
from pointformer.data.formats.protobuf import (
    Message,
    decode_packed_varints,
    encode_packed_varints,
    encode_varint,
    pb_field,
)


@dataclass(eq=False)
class Inner(Message):
    PROTO_NAME = "test.Inner"
    a: int = pb_field(1, "int32")
    s: str = pb_field(2, "string")


@dataclass(eq=False)
class Every(Message):
    PROTO_NAME = "test.Every"
    i32: int = pb_field(1, "int32")
    i64: int = pb_field(2, "int64")
    u32: int = pb_field(3, "uint32")
    u64: int = pb_field(4, "uint64")
    flag: bool = pb_field(5, "bool")
    kind: int = pb_field(6, "enum")
    f32: float = pb_field(7, "float")
    f64: float = pb_field(8, "double")
    fx32: int = pb_field(9, "fixed32")
    sfx32: int = pb_field(10, "sfixed32")
    fx64: int = pb_field(11, "fixed64")
    sfx64: int = pb_field(12, "sfixed64")
    text: str = pb_field(13, "string")
    blob: bytes = pb_field(14, "bytes")
    inner: Inner | None = pb_field(15, "message", message=Inner)
    packed_f: np.ndarray = pb_field(16, "float", repeated=True, packed=True)
    packed_i: np.ndarray = pb_field(17, "int32", repeated=True, packed=True)
    loose_d: np.ndarray = pb_field(18, "double", repeated=True)
    loose_i64: np.ndarray = pb_field(19, "int64", repeated=True)
    texts: list[str] = pb_field(20, "string", repeated=True)
    inners: list[Inner] = pb_field(21, "message", repeated=True, message=Inner)
    packed_u64: np.ndarray = pb_field(22, "uint64", repeated=True, packed=True)
    packed_b: np.ndarray = pb_field(23, "bool", repeated=True, packed=True)
    big: int = pb_field(300, "int32")


@dataclass(eq=False)
class Spec1(Message):  # the protobuf encoding guide's example
    a: int = pb_field(1, "int32")


@dataclass(eq=False)
class Spec2(Message):
    b: str = pb_field(2, "string")


@dataclass(eq=False)
class Spec3(Message):
    c: Spec1 | None = pb_field(3, "message", message=Spec1)


@dataclass(eq=False)
class Spec4(Message):
    d: np.ndarray = pb_field(4, "int32", repeated=True, packed=True)
    e: np.ndarray = pb_field(5, "int32", repeated=True)


def test_wire_format_spec_examples():
    # https://protobuf.dev/programming-guides/encoding/
    assert Spec1(a=150).encode() == b"\x08\x96\x01"
    assert Spec2(b="testing").encode() == b"\x12\x07\x74\x65\x73\x74\x69\x6e\x67"
    assert Spec3(c=Spec1(a=150)).encode() == b"\x1a\x03\x08\x96\x01"
    assert Spec4(d=np.array([3, 270, 86942])).encode() == b"\x22\x06\x03\x8e\x02\x9e\xa7\x05"
    assert Spec4(e=np.array([1, 2])).encode() == b"\x28\x01\x28\x02"
    assert Spec1(a=-2).encode() == b"\x08\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01"
    assert Spec1.decode(b"\x08\x96\x01").a == 150
    assert Spec1.decode(b"\x08\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01").a == -2
    # proto default values are omitted
    assert Spec1(a=0).encode() == b""
    assert encode_varint(1) == b"\x01" and encode_varint(300) == b"\xac\x02"


def _every() -> Every:
    return Every(
        i32=-5,
        i64=-(2**62),
        u32=2**32 - 1,
        u64=2**64 - 1,
        flag=True,
        kind=3,
        f32=1.5,
        f64=-2.25e100,
        fx32=123456,
        sfx32=-7,
        fx64=2**63 + 5,
        sfx64=-(2**40),
        text="héllo",
        blob=b"\x00\xff",
        inner=Inner(a=7, s="x"),
        packed_f=np.array([0.5, -1.0, 3.25], np.float32),
        packed_i=np.array([0, 1, -1, 2**31 - 1, -(2**31), 300], np.int32),
        loose_d=np.array([1.0, 2.5]),
        loose_i64=np.array([-1, 2**40]),
        texts=["a", "", "c"],
        inners=[Inner(a=1), Inner(s="two"), Inner()],
        packed_u64=np.array([0, 2**64 - 1, 128], np.uint64),
        packed_b=np.array([True, False, True]),
        big=9,
    )


def test_round_trip_every_kind():
    msg = _every()
    back = Every.decode(msg.encode())
    assert back == msg
    assert back.packed_f.dtype == np.float32 and back.packed_i.dtype == np.int32
    assert back.loose_i64.dtype == np.int64 and back.packed_u64.dtype == np.uint64
    assert Every.decode(b"") == Every()


def test_packed_and_unpacked_are_both_accepted():
    packed = Spec4(d=np.array([1, -2, 300])).encode()
    unpacked = b"".join(b"\x20" + encode_varint(v) for v in (1, -2, 300))
    assert np.array_equal(Spec4.decode(packed).d, [1, -2, 300])
    assert np.array_equal(Spec4.decode(unpacked).d, [1, -2, 300])
    # mixed, in wire order
    assert np.array_equal(Spec4.decode(unpacked + packed).d, [1, -2, 300, 1, -2, 300])


def test_vectorized_varints_match_scalar():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(-(2**31), 2**31, 1000), [0, 127, 128, 16383, 16384, -1]]).astype(np.int32)
    data = encode_packed_varints(values)
    assert data == b"".join(encode_varint(int(v)) for v in values)
    assert np.array_equal(decode_packed_varints(data, np.int32), values)
    u = np.array([0, 1, 2**63, 2**64 - 1], np.uint64)
    assert np.array_equal(decode_packed_varints(encode_packed_varints(u), np.uint64), u)


def test_unknown_fields_are_skipped():
    known = Inner(a=5, s="k").encode()
    unknown = (
        b"\x18\x96\x01"  # field 3 varint
        + b"\x21" + bytes(8)  # field 4 fixed64
        + b"\x2a\x03abc"  # field 5 length-delimited
        + b"\x35" + bytes(4)  # field 6 fixed32
        + b"\x3b\x08\x01\x3c"  # field 7 group containing field 1 varint
        + b"\xf8\x07\x01"  # field 127 varint
    )  # fmt: skip
    assert Inner.decode(unknown + known + unknown) == Inner(a=5, s="k")


def test_nested_repeated_messages():
    frame = pb.Frame(
        lasers=[pb.Laser(name=i, ri_return1=pb.RangeImage(range_image_compressed=bytes([i]) * i)) for i in range(1, 6)],
        laser_labels=[pb.Label(id=str(i), box=pb.LabelBox(center_x=i)) for i in range(3)],
    )
    back = pb.Frame.decode(frame.encode())
    assert back == frame
    assert [laser.name for laser in back.lasers] == [1, 2, 3, 4, 5]


def test_singular_message_occurring_twice_merges():
    data = b"\x1a\x03\x08\x96\x01" + b"\x1a\x02\x08\x01"
    assert Spec3.decode(data).c.a == 1


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x08", r"test\.Inner\.a \(field 1\): truncated varint"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "more than 10 bytes"),
        (b"\x12\x05ab", r"test\.Inner\.s \(field 2\): length 5 runs past the end"),
        (b"\x0a\x01x", r"test\.Inner\.a \(field 1\): wire type length-delimited for a int32 field"),
        (b"\x15\x00\x00\x00\x00", r"wire type 32-bit for a string field"),
        (b"\x2a\x05ab", r"unknown field 5.*runs past the end"),
        (b"\x0c", "end-group"),
        (b"\x3f", "invalid wire type 7"),
        (b"\x12\x02\xff\xfe", "invalid UTF-8"),
        (b"\x00", "field number 0"),
    ],
)
def test_malformed_inputs(data, match):
    with pytest.raises(DataFormatError, match=match):
        Inner.decode(data)


def test_malformed_nested_names_path():
    bad_inner = b"\x0a\x05ab"  # Inner.a declared varint but given as bytes
    data = b"\xaa\x01" + bytes([len(bad_inner)]) + bad_inner  # inners[0]
    data = Every(inners=[Inner(a=1)]).encode() + data
    with pytest.raises(DataFormatError, match=r"test\.Every\.inners\[1\] \(field 21\)\.a \(field 1\)"):
        Every.decode(data)
    bad_packed = b"\x82\x01\x03\x00\x00\x00"  # 3 bytes of packed float
    with pytest.raises(DataFormatError, match=r"packed_f \(field 16\): packed float payload of 3 bytes"):
        Every.decode(bad_packed)
    with pytest.raises(DataFormatError, match="truncated varint in packed array"):
        Every.decode(b"\x8a\x01\x02\x01\x80")


def test_waymo_messages_round_trip():
    ri = pb.MatrixFloat(data=np.arange(24, dtype=np.float32), shape=pb.MatrixShape(dims=np.array([2, 3, 4])))
    cp = pb.MatrixInt32(data=np.arange(-6, 6, dtype=np.int32), shape=pb.MatrixShape(dims=np.array([1, 2, 6])))
    transform = pb.Transform(transform=np.arange(16, dtype=np.float64))
    context = pb.Context(
        name="seg",
        camera_calibrations=[
            pb.CameraCalibration(
                name=1,
                intrinsic=np.arange(9.0),
                extrinsic=transform,
                width=1920,
                height=1280,
                rolling_shutter_direction=4,
            )
        ],  # fmt: skip
        laser_calibrations=[
            pb.LaserCalibration(
                name=1,
                beam_inclinations=np.linspace(-0.3, 0.05, 64),
                beam_inclination_min=-0.3,
                beam_inclination_max=0.05,
                extrinsic=transform,
            ),
            pb.LaserCalibration(name=2, beam_inclination_min=-1.0, beam_inclination_max=0.5, extrinsic=transform),
        ],  # fmt: skip
        stats=pb.Stats(
            laser_object_counts=[pb.ObjectCount(type=1, count=3)],
            camera_object_counts=[pb.ObjectCount(type=2, count=1)],
            time_of_day="Day",
            location="location_sf",
            weather="sunny",
        ),  # fmt: skip
    )
    label = pb.Label(
        box=pb.LabelBox(center_x=1, center_y=2, center_z=3, width=4, length=5, height=6, heading=-0.5),
        metadata=pb.LabelMetadata(speed_x=1, speed_y=2, speed_z=3, accel_x=4, accel_y=5, accel_z=6),
        type=pb.LabelType.TYPE_CYCLIST, id="abc", detection_difficulty_level=2, tracking_difficulty_level=1,
        num_lidar_points_in_box=17, num_top_lidar_points_in_box=12, most_visible_camera_name="FRONT",
        camera_synced_box=pb.LabelBox(center_x=9),
    )  # fmt: skip
    frame = pb.Frame(
        context=context,
        timestamp_micros=1_550_000_000_000_000,
        pose=transform,
        lasers=[
            pb.Laser(
                name=1,
                ri_return1=pb.RangeImage(range_image_compressed=b"abc", range_image_pose_compressed=b"p"),
                ri_return2=pb.RangeImage(camera_projection_compressed=b"q"),
            )
        ],
        laser_labels=[label, pb.Label()],
        no_label_zones=[pb.Polygon2dProto(x=np.array([0.0, 1, 1]), y=np.array([0.0, 0, 1]), id="z")],
        camera_labels=[pb.CameraLabels(name=1, labels=[label])],
        projected_lidar_labels=[pb.CameraLabels(name=2)],
    )  # fmt: skip
    objects = pb.Objects(
        objects=[pb.Object(object=label, score=0.25, overlap_with_nlz=True, context_name="seg",
                           frame_timestamp_micros=5, camera_name=3), pb.Object()],
        no_label_zone_objects=[pb.NoLabelZoneObject(zone=pb.Polygon2dProto(x=np.ones(3), y=np.zeros(3)),
                                                    context_name="seg", frame_timestamp_micros=5)],
    )  # fmt: skip
    for msg in (ri, cp, transform, context, label, frame, objects):
        assert type(msg).decode(msg.encode()) == msg
    assert pb.Object.decode(b"").score == 1.0  # proto default of Object.score


def test_waymo_field_numbers_on_the_wire():
    # Label.Box: length is field 5, width field 4; Metadata: speed_z is 5, accel_x 3.
    assert pb.LabelBox(length=1.0).encode() == b"\x29" + np.float64(1.0).tobytes()
    assert pb.LabelBox(width=1.0).encode() == b"\x21" + np.float64(1.0).tobytes()
    assert pb.LabelMetadata(speed_z=1.0).encode()[:1] == b"\x29"
    assert pb.Label(num_top_lidar_points_in_box=1).encode() == b"\x68\x01"
    # proto2: Transform.transform is unpacked, MatrixFloat.data is packed
    assert pb.Transform(transform=np.array([1.0])).encode() == b"\x09" + np.float64(1.0).tobytes()
    assert pb.MatrixFloat(data=np.array([1.0], np.float32)).encode() == b"\x0a\x04" + np.float32(1.0).tobytes()
    assert pb.MatrixShape(dims=np.array([64, 2650])).encode() == b"\x08\x40\x08\xda\x14"
    assert pb.Frame(timestamp_micros=1).encode() == b"\x10\x01"
    assert pb.Object(score=0.5).encode() == b"\x15" + np.float32(0.5).tobytes()
