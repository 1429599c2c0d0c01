"""Augmentations, filters and ground-truth sampling on hand-made samples and gt databases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pointformer.data.augment import (
    Compose,
    GlobalRotation,
    GlobalScaling,
    GlobalTranslation,
    RandomFlip,
    ShufflePoints,
    flip,
    rotate,
    scale,
    translate,
)
from pointformer.data.gt_sampling import GTSampler, GTSamplingConfig
from pointformer.data.layout import GTDatabaseRecords
from pointformer.data.processing import ClassFilter, EncodeFeatures, MinPointsFilter, RangeFilter, class_labels
from pointformer.data.sample import FrameSample
from pointformer.ops import boxes_iou_bev, points_in_boxes

CLASSES = ("Vehicle", "Pedestrian", "Cyclist")
FEATURES = ("x", "y", "z", "intensity", "elongation")


def make_sample(points, boxes, names, features=FEATURES, num_points_in_box=None) -> FrameSample:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 9)
    names = np.asarray(names, np.str_)
    m = len(boxes)
    return FrameSample(
        frame_id="seq_0000",
        points=np.asarray(points, np.float32),
        point_features=tuple(features),
        boxes=boxes,
        names=names,
        labels=class_labels(names, CLASSES),
        difficulty=np.ones(m, np.int8),
        num_points_in_box=np.full(m, 10, np.int32)
        if num_points_in_box is None
        else np.asarray(num_points_in_box, np.int32),
        pose=np.eye(4),
        timestamp_micros=0,
    )


def points_in_box_local(rng, box, n, margin=0.9) -> np.ndarray:
    """``(n, 3)`` points strictly inside ``box`` (within ``margin`` of its half extents)."""
    local = rng.uniform(-0.5, 0.5, (n, 3)) * margin * box[3:6]
    c, s = np.cos(box[6]), np.sin(box[6])
    xy = local[:, :2] @ np.array([[c, -s], [s, c]]).T
    return np.concatenate([xy, local[:, 2:]], 1) + box[:3]


def scene(seed=0) -> FrameSample:
    """Three boxes with moving objects (velocity along the heading), points inside them and
    background points far from every box face."""
    rng = np.random.default_rng(seed)
    boxes = np.array(
        [
            [10, 5, 0.5, 4.5, 2.0, 1.6, 0.3, 0, 0],
            [-8, -12, 0.2, 0.8, 0.8, 1.8, -2.5, 0, 0],
            [20, -20, 1.0, 1.8, 0.7, 1.7, 2.9, 0, 0],
        ],
        np.float64,
    )
    speed = np.array([8.0, 1.2, 4.0])
    boxes[:, 7] = speed * np.cos(boxes[:, 6])
    boxes[:, 8] = speed * np.sin(boxes[:, 6])
    inside = np.concatenate([points_in_box_local(rng, b, 30) for b in boxes])
    far = rng.uniform(-40, 40, (400, 3))
    far = far[np.min(np.linalg.norm(far[:, None, :2] - boxes[None, :, :2], axis=2), axis=1) > 6]
    xyz = np.concatenate([inside, far])
    feats = rng.uniform(0, 2, (len(xyz), 2))
    return make_sample(np.concatenate([xyz, feats], 1), boxes, ["Vehicle", "Pedestrian", "Cyclist"])


def membership(sample: FrameSample) -> torch.Tensor:
    return points_in_boxes(torch.from_numpy(sample.points[:, :3].copy()), torch.from_numpy(sample.boxes[:, :7].copy()))


def assert_velocity_along_heading(sample: FrameSample) -> None:
    b = sample.boxes.astype(np.float64)
    speed = np.linalg.norm(b[:, 7:9], axis=1)
    np.testing.assert_allclose(b[:, 7], speed * np.cos(b[:, 6]), atol=1e-4)
    np.testing.assert_allclose(b[:, 8], speed * np.sin(b[:, 6]), atol=1e-4)


def assert_heading_in_range(sample: FrameSample) -> None:
    assert np.all(sample.boxes[:, 6] >= -np.pi) and np.all(sample.boxes[:, 6] < np.pi)


# ---------------------------------------------------------------------------------------------
# Global augmentations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transform",
    [
        lambda s: flip(s, "x"),
        lambda s: flip(s, "y"),
        lambda s: rotate(s, 0.7),
        lambda s: rotate(s, -2.9),
        lambda s: scale(s, 1.05),
        lambda s: scale(s, 0.95),
        lambda s: translate(s, (1.5, -0.3, 0.2)),
    ],
    ids=["flip_x", "flip_y", "rot+", "rot-", "scale_up", "scale_down", "translate"],
)
def test_transform_keeps_membership_and_velocity_direction(transform):
    s = scene()
    before = membership(s)
    assert before.any(0).all()  # every box holds points
    out = transform(s)
    assert torch.equal(membership(out), before)
    np.testing.assert_array_equal(out.points[:, 3:], s.points[:, 3:])  # features untouched
    assert_velocity_along_heading(out)
    assert_heading_in_range(out)


@pytest.mark.parametrize("axis", ["x", "y"])
def test_flip_twice_is_identity_and_flips_heading(axis):
    s = scene()
    once = flip(s, axis)
    col = 1 if axis == "x" else 0
    np.testing.assert_array_equal(once.points[:, col], -s.points[:, col])
    expected = -s.boxes[:, 6] if axis == "x" else np.pi - s.boxes[:, 6]
    np.testing.assert_allclose(np.angle(np.exp(1j * (once.boxes[:, 6] - expected))), 0, atol=1e-6)
    np.testing.assert_array_equal(once.boxes[:, 7 + col], -s.boxes[:, 7 + col])
    np.testing.assert_array_equal(once.boxes[:, 8 - col], s.boxes[:, 8 - col])
    twice = flip(once, axis)
    np.testing.assert_array_equal(twice.points, s.points)
    np.testing.assert_allclose(twice.boxes, s.boxes, atol=1e-6)


def test_rotation_then_inverse_is_identity():
    s = scene()
    r = rotate(s, 0.9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (r.boxes[:, 6] - s.boxes[:, 6] - 0.9))), 0, atol=1e-6)
    np.testing.assert_allclose(
        np.linalg.norm(r.boxes[:, 7:9], axis=1), np.linalg.norm(s.boxes[:, 7:9], axis=1), rtol=1e-6
    )
    np.testing.assert_allclose(r.boxes[:, 3:6], s.boxes[:, 3:6])
    back = rotate(r, -0.9)
    np.testing.assert_allclose(back.points, s.points, atol=1e-4)
    np.testing.assert_allclose(back.boxes, s.boxes, atol=1e-5)


def test_scaling_scales_dims_centres_and_velocity():
    s = scene()
    out = scale(s, 1.04)
    np.testing.assert_allclose(out.boxes[:, :6], s.boxes[:, :6] * 1.04, rtol=1e-6)
    np.testing.assert_allclose(out.boxes[:, 7:9], s.boxes[:, 7:9] * 1.04, rtol=1e-6)
    np.testing.assert_array_equal(out.boxes[:, 6], s.boxes[:, 6])
    np.testing.assert_allclose(out.points[:, :3], s.points[:, :3] * 1.04, rtol=1e-6)


def test_random_augmentations_are_seeded_and_keep_membership():
    s = scene()
    aug = Compose(
        (RandomFlip(("x", "y"), 0.5), GlobalRotation((-np.pi / 4, np.pi / 4)), GlobalScaling((0.95, 1.05)),
         GlobalTranslation((0.2, 0.2, 0.2)), ShufflePoints())
    )  # fmt: skip
    a = aug(s, np.random.default_rng(3))
    b = aug(s, np.random.default_rng(3))
    c = aug(s, np.random.default_rng(4))
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.boxes, c.boxes)
    assert sorted(map(tuple, a.points[:, 3:])) == sorted(map(tuple, s.points[:, 3:]))  # a permutation
    assert torch.equal(membership(a).sum(0), membership(s).sum(0))
    assert_velocity_along_heading(a)


def test_flip_probability_extremes():
    s = scene()
    never = RandomFlip(("x", "y"), 0.0)(s, np.random.default_rng(0))
    always = RandomFlip(("x", "y"), 1.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(never.points, s.points)
    np.testing.assert_array_equal(always.points[:, :2], -s.points[:, :2])


# ---------------------------------------------------------------------------------------------
# Processing
# ---------------------------------------------------------------------------------------------


def test_filters_and_feature_encoding():
    s = scene()
    s = s.replace(num_points_in_box=np.array([0, 5, 12], np.int32), names=np.array(["Vehicle", "Sign", "Cyclist"]),
                  labels=class_labels(np.array(["Vehicle", "Sign", "Cyclist"]), CLASSES))  # fmt: skip
    assert s.labels.tolist() == [0, -1, 2]
    assert ClassFilter()(s).names.tolist() == ["Vehicle", "Cyclist"]
    assert MinPointsFilter(6)(s).num_points_in_box.tolist() == [12]

    r = RangeFilter((-10.0, -15.0, -1.0, 15.0, 15.0, 1.0))(s)
    lo, hi = np.array([-10, -15, -1], np.float32), np.array([15, 15, 1], np.float32)
    expected = np.all((s.points[:, :3] >= lo) & (s.points[:, :3] < hi), 1)
    np.testing.assert_array_equal(r.points, s.points[expected])
    assert r.names.tolist() == ["Vehicle", "Sign"]  # (20, -20) is outside
    edge = make_sample([[15.0, 0, 0, 0, 0], [-10.0, 0, 0, 0, 0]], np.zeros((0, 9)), [])
    assert RangeFilter((-10.0, -15.0, -1.0, 15.0, 15.0, 1.0))(edge).points[:, 0].tolist() == [-10.0]  # half-open

    e = EncodeFeatures(("x", "y", "z", "elongation"), {"elongation": "tanh"})(s)
    assert e.point_features == ("x", "y", "z", "elongation")
    np.testing.assert_allclose(e.points[:, 3], np.tanh(s.points[:, 4]), rtol=1e-6)
    with pytest.raises(KeyError):
        EncodeFeatures(("x", "y", "z", "time"))(s)
    with pytest.raises(ValueError, match="unknown transform"):
        EncodeFeatures(FEATURES, {"intensity": "log"})(s)


# ---------------------------------------------------------------------------------------------
# Ground-truth sampling
# ---------------------------------------------------------------------------------------------

DB_INTENSITY = 5.0  # database points carry intensity >= DB_INTENSITY, scene points < 2


def make_database(root: Path, rng) -> GTDatabaseRecords:
    """Vehicles, pedestrians and cyclists on a grid (no two overlap), two vehicles overlapping each
    other and one overlapping the scene's vehicle; pedestrians with few points; one cyclist of
    difficulty 2."""
    rows = []
    k = 0
    for name, dims, count in (
        ("Vehicle", (4.0, 1.9, 1.6), 8),
        ("Pedestrian", (0.8, 0.8, 1.8), 6),
        ("Cyclist", (1.8, 0.7, 1.7), 6),
    ):
        for i in range(count):
            centre = (-30.0 + 7.5 * i, {"Vehicle": 25.0, "Pedestrian": 32.0, "Cyclist": -30.0}[name], 0.5)
            rows.append(
                (
                    name,
                    (*centre, *dims, rng.uniform(-np.pi, np.pi), 1.0, 0.0),
                    1,
                    20 if name != "Pedestrian" or i % 2 else 3,
                )
            )
            k += 1
    rows.append(("Vehicle", (-6.0, -2.0, 0.5, 4.0, 1.9, 1.6, 0.0, 0, 0), 1, 20))
    rows.append(("Vehicle", (-5.0, -2.5, 0.5, 4.0, 1.9, 1.6, 0.5, 0, 0), 1, 20))
    rows.append(("Vehicle", (10.5, 5.0, 0.5, 4.0, 1.9, 1.6, 0.0, 0, 0), 1, 20))  # over the scene's vehicle
    rows[15] = ("Cyclist", rows[15][1], 2, 20)  # a cyclist of difficulty 2 (rows 14-19 are cyclists)
    (root / "gt_database").mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (_, box, _, n) in enumerate(rows):
        box = np.asarray(box)
        xyz = points_in_box_local(rng, box, n) - box[:3]
        pts = np.concatenate([xyz, np.full((n, 1), DB_INTENSITY + k), rng.uniform(0, 1, (n, 1))], 1).astype(np.float32)
        path = f"gt_database/obj_{k}.npy"
        np.save(root / path, pts)
        paths.append(path)
    k = len(rows)
    return GTDatabaseRecords(
        table=root / "gt_database_training.parquet",
        path=paths,
        name=np.array([r[0] for r in rows], np.str_),
        box=np.array([r[1] for r in rows], np.float32),
        difficulty=np.array([r[2] for r in rows], np.int8),
        num_points=np.array([r[3] for r in rows], np.int32),
        frame_id=["f"] * k,
        sequence=["s"] * k,
        frame_index=np.zeros(k, np.int32),
        box_index=np.arange(k, dtype=np.int32),
        object_id=[str(i) for i in range(k)],
    )


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    root = tmp_path_factory.mktemp("gtdb")
    return root, make_database(root, np.random.default_rng(0))


def dense_scene(features=FEATURES) -> FrameSample:
    """``scene()``'s boxes with a dense carpet of scene points under every database location."""
    s = scene()
    rng = np.random.default_rng(1)
    carpet = np.concatenate([rng.uniform(-40, 40, (6000, 2)), rng.uniform(-0.5, 1.5, (6000, 1))], 1)
    carpet = np.concatenate([carpet, rng.uniform(0, 1, (6000, 2))], 1)
    points = np.concatenate([s.points, carpet]).astype(np.float32)
    if "time" in features:
        points = np.concatenate([points, np.full((len(points), 1), 0.1, np.float32)], 1)
    return s.replace(points=points, point_features=tuple(features))


def sampler(database, **kw) -> GTSampler:
    root, db = database
    kw.setdefault("sample_groups", {"Vehicle": 6, "Pedestrian": 4, "Cyclist": 3})
    kw.setdefault("min_points", {"Pedestrian": 10})
    return GTSampler(root, db, FEATURES, CLASSES, GTSamplingConfig(**kw), seed=7)


def test_gt_sampling_pastes_without_collisions(database):
    root, db = database
    s = dense_scene()
    out = sampler(database)(s, np.random.default_rng(0), epoch=0, index=0)
    m = s.num_boxes
    pasted = out.boxes[m:]
    assert len(pasted) > 0
    iou = boxes_iou_bev(
        torch.from_numpy(out.boxes[:, :7].astype(np.float64)), torch.from_numpy(out.boxes[:, :7].astype(np.float64))
    )
    assert torch.all(iou.fill_diagonal_(0) == 0)
    np.testing.assert_array_equal(out.boxes[:m], s.boxes)
    assert out.labels[m:].tolist() == class_labels(out.names[m:], CLASSES).tolist()

    inside = points_in_boxes(torch.from_numpy(out.points[:, :3].copy()), torch.from_numpy(pasted[:, :7].copy())).numpy()
    for j, box in enumerate(pasted):
        row = int(np.flatnonzero(np.all(db.box == box, axis=1))[0])
        mine = out.points[inside[:, j]]
        # Only the database object's points are in the pasted box: the scene's were removed.
        assert np.all(mine[:, 3] == DB_INTENSITY + row)
        src = np.load(root / db.path[row])
        np.testing.assert_allclose(np.sort(mine[:, :3], 0), np.sort(src[:, :3] + box[:3], 0), atol=1e-5)
        assert out.num_points_in_box[m + j] == db.num_points[row]
    # Every database point came along (none dropped), and only scene points outside pasted boxes stayed.
    assert np.sum(out.points[:, 3] >= DB_INTENSITY) == int(
        sum(db.num_points[np.flatnonzero(np.isin(db.box, pasted).all(1))])
    )
    scene_in = (
        points_in_boxes(torch.from_numpy(s.points[:, :3].copy()), torch.from_numpy(pasted[:, :7].copy())).any(1).numpy()
    )
    assert np.sum(out.points[:, 3] < DB_INTENSITY) == np.sum(~scene_in)


def test_gt_sampling_counts_and_filters(database):
    _, db = database
    s = dense_scene()
    out = sampler(database)(s, np.random.default_rng(0), epoch=0, index=0)
    counts = {c: int(np.sum(out.names == c)) for c in CLASSES}
    # Vehicle pool: 8 on the grid + 3 that collide (with each other / the scene): the target 6 is reachable.
    assert counts == {"Vehicle": 6, "Pedestrian": 4, "Cyclist": 3}
    pasted_rows = [int(np.flatnonzero(np.all(db.box == b, axis=1))[0]) for b in out.boxes[s.num_boxes :]]
    assert all(db.num_points[r] >= 10 for r in pasted_rows if db.name[r] == "Pedestrian")

    # Pools smaller than the target: everything usable is pasted, nothing that fails a filter.
    big = sampler(database, sample_groups={"Pedestrian": 50, "Cyclist": 50}, exclude_difficulty=(2,), oversample=50)
    out = big(s, np.random.default_rng(0), epoch=0, index=0)
    rows = [int(np.flatnonzero(np.all(db.box == b, axis=1))[0]) for b in out.boxes[s.num_boxes :]]
    usable = {r for r in range(len(db.path)) if db.name[r] in ("Pedestrian", "Cyclist") and db.difficulty[r] != 2
              and (db.name[r] != "Pedestrian" or db.num_points[r] >= 10)}  # fmt: skip
    assert set(rows) == usable


def test_gt_sampling_is_deterministic_and_draws_without_replacement(database):
    s = dense_scene()
    a = sampler(database)(s, np.random.default_rng(0), epoch=1, index=3)
    b = sampler(database)(s, np.random.default_rng(9), epoch=1, index=3)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.points, b.points)
    # Frames of one epoch read disjoint windows of the shuffled pool (Cyclist: 6 objects, target 2,
    # no collisions among them): three frames use up the pool.
    one = sampler(database, sample_groups={"Cyclist": 2}, oversample=1)
    empty = make_sample(np.zeros((0, 5)), np.zeros((0, 9)), [])
    drawn = [tuple(map(tuple, one(empty, np.random.default_rng(0), epoch=0, index=i).boxes)) for i in range(3)]
    flat = [b for d in drawn for b in d]
    assert len(flat) == 6 and len(set(flat)) == 6
    other_epoch = [tuple(map(tuple, one(empty, np.random.default_rng(0), epoch=1, index=i).boxes)) for i in range(3)]
    assert other_epoch != drawn and {b for d in other_epoch for b in d} == set(flat)


def test_gt_sampling_time_column(database):
    s = dense_scene(FEATURES + ("time",))
    out = sampler(database)(s, np.random.default_rng(0), epoch=0, index=0)
    db_points = out.points[out.points[:, 3] >= DB_INTENSITY]
    assert len(db_points) and np.all(db_points[:, 5] == 0)
    assert np.all(out.points[out.points[:, 3] < DB_INTENSITY, 5] == np.float32(0.1))


def test_gt_sampling_rejects_unknown_class(database):
    root, db = database
    with pytest.raises(ValueError, match="not in class_names"):
        GTSampler(root, db, FEATURES, CLASSES, GTSamplingConfig(sample_groups={"Sign": 3}))


def test_points_in_any_box_prefilter_matches_the_exact_test() -> None:
    from pointformer.data.gt_sampling import points_in_any_box
    from pointformer.ops import points_in_boxes

    rng = np.random.default_rng(3)
    points = rng.uniform(-60, 60, size=(20000, 4)).astype(np.float32)
    points[:, 2] = rng.uniform(-2, 3, size=20000)
    centres = rng.uniform(-70, 70, size=(40, 3))  # some outside the points' extent
    centres[:, 2] = rng.uniform(-1, 1, size=40)
    dims = rng.uniform(0.5, 12.0, size=(40, 3))  # some much larger than a prefilter cell
    boxes = np.concatenate([centres, dims, rng.uniform(-np.pi, np.pi, size=(40, 1))], 1).astype(np.float32)
    exact = points_in_boxes(torch.from_numpy(points[:, :3].copy()), torch.from_numpy(boxes)).any(1).numpy()
    assert exact.sum() > 100
    np.testing.assert_array_equal(points_in_any_box(points, boxes), exact)
    assert not points_in_any_box(points[:0], boxes).size and not points_in_any_box(points, boxes[:0]).any()
