"""pointformer.config: ``_base_`` inheritance, ``--set`` overrides, validation errors that name the
file and the key, lookup of bare names under configs/, and model-part keys checked at build time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pointformer.config import (
    CONFIG_DIR,
    ConfigError,
    apply_overrides,
    load_config,
    parse_override,
    read_yaml_with_bases,
    resolve_config_path,
)
from pointformer.models import build_detector

WAYMO = CONFIG_DIR / "waymo_flatformer.yaml"
DEMO = CONFIG_DIR / "demo" / "waymo_flatformer_demo.yaml"


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _child(tmp_path: Path, data: dict, name: str = "child.yaml") -> Path:
    """A config in ``tmp_path`` over the Waymo config (absolute ``_base_``)."""
    return _write(tmp_path / name, {"_base_": str(WAYMO), **data})


# --- _base_ ----------------------------------------------------------------------------------


def test_base_dicts_merge_and_lists_replace(tmp_path):
    _write(tmp_path / "base.yaml", {"a": {"x": 1, "y": [1, 2, 3], "z": {"deep": 1, "keep": "b"}}, "b": [1, 2]})
    _write(tmp_path / "sub" / "child.yaml", {"_base_": "../base.yaml", "a": {"y": [9], "z": {"deep": 2}}, "c": 3})
    merged = read_yaml_with_bases((tmp_path / "sub" / "child.yaml").resolve())
    assert merged == {"a": {"x": 1, "y": [9], "z": {"deep": 2, "keep": "b"}}, "b": [1, 2], "c": 3}


def test_base_list_applies_in_order_and_chains(tmp_path):
    _write(tmp_path / "one.yaml", {"k": 1, "only_one": True, "m": {"a": 1}})
    _write(tmp_path / "two.yaml", {"_base_": "one.yaml", "k": 2, "m": {"b": 2}})
    _write(tmp_path / "three.yaml", {"k": 3, "m": {"a": 30}})
    _write(tmp_path / "top.yaml", {"_base_": ["two.yaml", "three.yaml"], "top": 0})
    merged = read_yaml_with_bases((tmp_path / "top.yaml").resolve())
    # Later bases win over earlier ones; a base's own bases come first.
    assert merged == {"k": 3, "only_one": True, "m": {"a": 30, "b": 2}, "top": 0}


def test_demo_config_inherits_from_the_waymo_config():
    demo, full = load_config("demo/waymo_flatformer_demo.yaml"), load_config("waymo_flatformer.yaml")
    # Merged dicts: the demo's keys replace, the rest is inherited.
    assert demo.model["voxel_encoder"] == {
        **full.model["voxel_encoder"],
        "feat_channels": [64],
        "with_absolute_xyz": False,
    }
    assert demo.model["backbone3d"]["pos_temperature"] == 10000.0 and demo.model["backbone3d"]["num_blocks"] == 1
    assert demo.optimizer == {**full.optimizer, "lr": 0.003}
    assert demo.schedule == {**full.schedule, "div_factor": 10.0, "pct_start": 0.3}
    assert full.data.options["flip_axes"] == ["x", "y"] and demo.data.options["flip_axes"] == []  # list replaced
    assert demo.data.options["gt_sampling"] is None and demo.data.options["scaling_range"] == [0.95, 1.05]
    assert demo.data.root == "datasets/synthetic_waymo" and full.data.root == "datasets/waymo"
    assert demo.train.epochs == 40 and demo.train.grad_clip == 10.0  # set, inherited
    # The grid is derived once, from voxelization.
    assert full.grid.shape == (1, 468, 468) and demo.grid.shape == (1, 160, 160)
    assert "_base_" not in demo.raw


def test_base_cycle(tmp_path):
    a = _write(tmp_path / "a.yaml", {"_base_": "b.yaml", "train": {"epochs": 1}})
    _write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match=r"_base_ cycle") as e:
        load_config(a)
    assert "a.yaml" in str(e.value) and "b.yaml" in str(e.value)
    selfish = _write(tmp_path / "self.yaml", {"_base_": "self.yaml"})
    with pytest.raises(ConfigError, match=r"self\.yaml: _base_ cycle"):
        load_config(selfish)


def test_missing_base(tmp_path):
    path = _write(tmp_path / "c.yaml", {"_base_": "nowhere.yaml"})
    with pytest.raises(ConfigError, match=r"c\.yaml: _base_ 'nowhere\.yaml' not found"):
        load_config(path)


def test_bad_base_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"d\.yaml: _base_ must be a path"):
        load_config(_write(tmp_path / "d.yaml", {"_base_": {"x": 1}}))
    with pytest.raises(ConfigError, match=r"e\.yaml: not valid YAML"):
        load_config(_write(tmp_path / "e.yaml", "train: [1, 2\n"))
    with pytest.raises(ConfigError, match=r"f\.yaml: the top level must be a mapping"):
        load_config(_write(tmp_path / "f.yaml", "- 1\n- 2\n"))


# --- lookup ----------------------------------------------------------------------------------


def test_bare_names_resolve_under_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: the names must resolve under configs/
    assert resolve_config_path("waymo_flatformer.yaml") == WAYMO
    assert resolve_config_path("waymo_flatformer") == WAYMO
    assert resolve_config_path("demo/waymo_flatformer_demo") == DEMO
    assert load_config("waymo_flatformer").path == str(WAYMO)
    assert load_config("waymo_flatformer").name == "waymo_flatformer"
    # A path that exists is taken as it is.
    local = _child(tmp_path, {"train": {"epochs": 3}}, "waymo_flatformer.yaml")
    assert resolve_config_path("waymo_flatformer.yaml") == local.resolve()
    assert load_config(local).train.epochs == 3
    with pytest.raises(FileNotFoundError, match=r"'no_such_config' not found.*waymo_flatformer\.yaml"):
        load_config("no_such_config")


def test_mapping_input():
    data = yaml.safe_load(WAYMO.read_text())
    cfg = load_config(data, ["train.epochs=2"])
    assert cfg.path == "" and cfg.name == "config" and cfg.train.epochs == 2
    assert data["train"]["epochs"] == 24  # the caller's mapping is not modified
    with pytest.raises(ConfigError, match=r"^<config>: unknown top-level keys \['extra'\]"):
        load_config({**data, "extra": 1})
    model = {k: v for k, v in data["model"].items() if k != "neck"}
    with pytest.raises(ConfigError, match=r"^<config>: model needs exactly the parts .*missing \['neck'\]"):
        load_config({**data, "model": model})


# --- overrides -------------------------------------------------------------------------------


def test_overrides_scalars_lists_and_new_keys():
    cfg = load_config(
        "waymo_flatformer.yaml",
        [
            "train.epochs=2",
            "train.grad_clip=null",
            "train.amp=off",
            "train.sync_bn=true",
            "optimizer.lr=3e-4",
            "voxelization.voxel_size=[0.48, 0.48, 6]",
            "dataset.flip_axes=[x]",
            "model.head.score_threshold=0.25",  # a key the file does not have
            "model.backbone3d.window_shape=[7,7]",
            "train.epochs=3",  # the last one wins
        ],
    )
    assert cfg.train.epochs == 3 and cfg.train.grad_clip is None and cfg.train.amp == "off" and cfg.train.sync_bn
    assert cfg.optimizer["lr"] == pytest.approx(3e-4)
    assert cfg.grid.shape == (1, 312, 312) and list(cfg.grid.voxel_size) == pytest.approx([0.48, 0.48, 6.0])
    assert cfg.data.options["flip_axes"] == ["x"]
    assert cfg.model["head"]["score_threshold"] == 0.25 and cfg.model["head"]["out_size_factor"] == 1
    assert cfg.model["backbone3d"]["window_shape"] == [7, 7]
    assert cfg.raw["train"]["epochs"] == 3  # what checkpoints store


def test_overrides_nested_new_sections_and_mapping_values():
    data = {"a": {"b": 1, "m": {"x": 1, "y": 2}}, "n": None}
    out = apply_overrides(data, ["a.c.d.e=5", "n.k=[1, [2, 3]]", "a.m={y: 20, z: 30}", "s=some text"])
    assert out == {"a": {"b": 1, "c": {"d": {"e": 5}}, "m": {"x": 1, "y": 20, "z": 30}}, "n": {"k": [1, [2, 3]]},
                   "s": "some text"}  # fmt: skip
    assert data == {"a": {"b": 1, "m": {"x": 1, "y": 2}}, "n": None}
    assert parse_override("a.b=") == (["a", "b"], None)
    assert parse_override(" a.b =x=y") == (["a", "b"], "x=y")  # only the first '=' separates


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs", r"'train\.epochs' must look like section\.key=value"),
        ("=3", r"must look like section\.key=value"),
        ("train..epochs=3", r"empty key part in 'train\.\.epochs'"),
        ("train.epochs=[1,", r"'train\.epochs=\[1,': value is not valid YAML"),
        ("train.epochs.x=1", r"train\.epochs is not a section"),
    ],
)
def test_bad_override_syntax(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("waymo_flatformer.yaml", [override])


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("trian.epochs=1", r"unknown top-level keys \['trian'\]"),
        ("train.epoch=3", r"train: unknown keys \['epoch'\]"),
        ("eval.max_frame=1", r"eval: unknown keys \['max_frame'\]"),
        ("dataset.classnames=[Vehicle]", r"dataset: .*\['classnames'\]"),
        ("voxelization.voxel=[1, 1, 1]", r": voxelization: unknown keys \['voxel'\]"),
        ("voxelization.voxel_size=[0.33, 0.32, 6]", r"voxel_size\[0\] = 0\.33 does not divide the x extent"),
        ("voxelization.voxel_size=[0.32, 0.32, 5]", r"voxel_size\[2\] = 5\.0 does not divide the z extent"),
        ("model.backbone3d.window_shape=[469, 13]", r"model\.backbone3d\.window_shape \[469, 13\].*468 x 468"),
        ("model.backbone3d.window_shape=[13, 13, 2]", r"model\.backbone3d\.window_shape \[13, 13, 2\]"),
        ("model.head.tasks=[[Vehicle, Cyclist, Pedestrian]]", r"model\.head\.tasks .* dataset\.class_names"),
        ("dataset.class_names=[Vehicle, Pedestrian]", r"model\.head\.tasks .* dataset\.class_names"),
        ("model.fancy={type: X}", r"model needs exactly the parts .*unknown \['fancy'\]"),
        ("model.neck=null", r"model\.neck must be a mapping with a 'type' name"),
        ("model.head.type=null", r"model\.head must be a mapping with a 'type' name"),
        ("train.amp=fp8", r"train\.amp must be one of auto, bf16, fp16, off, got 'fp8'"),
        ("train.epochs=0", r"train\.epochs must be an integer >= 1, got 0"),
        ("eval.metric=kitti", r"eval\.metric must be one of waymo, nuscenes, none"),
    ],
)
def test_validation_errors_name_file_and_key(override, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config("waymo_flatformer.yaml", [override])
    assert str(e.value).startswith(f"{WAYMO}: "), str(e.value)


def test_window_that_fits_only_the_full_grid(tmp_path):
    # 13 x 13 windows fit 468 x 468 cells but not a 32 x 32 m range of 4 m pillars (8 x 8 cells).
    path = _child(tmp_path, {"voxelization": {"point_cloud_range": [-16, -16, -2, 16, 16, 4], "voxel_size": [4, 4, 6]}})
    with pytest.raises(ConfigError, match=r"window_shape \[13, 13\].*8 x 8 x 1") as e:
        load_config(path)
    assert str(e.value).startswith(str(path.resolve()))
    assert load_config(path, ["model.backbone3d.window_shape=[8, 8]"]).grid.shape == (1, 8, 8)


def test_error_names_the_child_file(tmp_path):
    path = _child(tmp_path, {"train": {"epochz": 1}})
    with pytest.raises(ConfigError, match=r"child\.yaml: train: unknown keys \['epochz'\]"):
        load_config(path)


# --- model parts, checked at build time ------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "model.backbone3d.num_head=4",
            r"model\.backbone3d: unknown keys \['num_head'\] for FlatFormer; known: .*num_heads",
        ),
        ("model.head.score_treshold=0.2", r"model\.head: unknown keys \['score_treshold'\] for CenterHead"),
        ("model.voxel_encoder.feat_chanels=[8]", r"model\.voxel_encoder: unknown keys \['feat_chanels'\]"),
        ("model.backbone3d.type=FlatFormerX", r"model\.backbone3d: unknown backbone3d type 'FlatFormerX'"),
        ("model.head.in_channels=3", r"model\.head: \['in_channels'\] are derived by the builder"),
        ("model.backbone3d.num_heads=5", r"model\.backbone3d \(FlatFormer\): .*num_heads 5"),
    ],
)
def test_build_rejects_bad_model_keys(override, message):
    cfg = load_config("demo/waymo_flatformer_demo.yaml", [override])  # the config layer cannot know them
    with pytest.raises(ConfigError, match=message) as e:
        build_detector(cfg)
    assert str(e.value).startswith(f"{DEMO}: "), str(e.value)


def test_yaml_gotchas_read_as_meant(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as a string and a bare off as False; a config means a float and "off".
    path = _write(tmp_path / "g.yaml", f"_base_: {WAYMO}\noptimizer: {{lr: 1e-3}}\ntrain: {{amp: off}}\n")
    cfg = load_config(path, ["optimizer.weight_decay=5E-2"])
    assert cfg.optimizer["lr"] == 1e-3 and isinstance(cfg.optimizer["lr"], float)
    assert cfg.optimizer["weight_decay"] == 0.05
    assert cfg.train.amp == "off" and load_config(path, ["train.amp=on"]).train.amp == "auto"
    assert parse_override("a=1e5x") == (["a"], "1e5x") and parse_override("a=12") == (["a"], 12)


# --- values by type and range (issue 18) -------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=fast", "optimizer.lr must be a finite number > 0, got 'fast' (str)"),
        ("optimizer.lr=-1e-3", "optimizer.lr must be a finite number > 0, got -0.001 (float)"),
        ("optimizer.lr=.nan", "optimizer.lr must be a finite number > 0, got nan (float)"),
        ("optimizer.weight_decay=.inf", "optimizer.weight_decay must be a finite number >= 0"),
        ("optimizer.type=lamb", "optimizer.type must be one of adamw, adam, sgd"),
        ("optimizer.lrr=0.1", "optimizer: unknown keys ['lrr']"),
        ("train.epochs=two", "train.epochs must be an integer >= 1, got 'two' (str)"),
        ("train.epochs=1.7", "train.epochs must be an integer >= 1, got 1.7 (float)"),
        ("train.epochs=true", "train.epochs must be an integer >= 1, got True (bool)"),
        ("train.grad_clip=0", "train.grad_clip must be a finite number > 0 (or null)"),
        ("train.sync_bn=yes please", "train.sync_bn must be true or false"),
        ("eval.batch_size=0", "eval.batch_size must be an integer >= 1"),
        ("schedule.pct_start=1", "schedule.pct_start must be a finite number in [0, 1)"),
        ("schedule.momentum_range=[0.9, 2]", "schedule.momentum_range must be a list of 2 items"),
        ("dataset.flip_probability=1.5", "dataset.flip_probability must be a finite number in [0, 1]"),
        ("dataset.num_sweeps=-1", "dataset.num_sweeps must be an integer >= 0"),
    ],
)
def test_values_are_checked_by_type_and_range(override, message):
    with pytest.raises(ConfigError) as error:
        load_config("waymo_flatformer.yaml", [override])
    assert message in str(error.value) and "waymo_flatformer.yaml" in str(error.value)


def test_valid_values_pass():
    cfg = load_config("waymo_flatformer.yaml", ["train.epochs=3", "optimizer.lr=1e-3", "train.grad_clip=null",
                                                "train.amp=off", "dataset.flip_probability=0"])  # fmt: skip
    assert cfg.train.epochs == 3 and cfg.train.grad_clip is None and cfg.train.amp == "off"


def test_every_typed_field_has_a_value_spec():
    import dataclasses

    from pointformer.config import EvalSettings, TrainSettings
    from pointformer.config_values import EVAL_VALUES, TRAIN_VALUES

    assert {f.name for f in dataclasses.fields(TrainSettings)} == set(TRAIN_VALUES)
    assert {f.name for f in dataclasses.fields(EvalSettings)} == set(EVAL_VALUES)


def test_every_shipped_config_passes():
    from pointformer.config import CONFIG_DIR

    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        load_config(path)
