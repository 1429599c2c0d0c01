"""tools/convert_checkpoint.py and the converter's checks: unused, unfilled and misshapen tensors,
the backbone-only option, spconv layout detection, weights_only loading with the --trust-pickle
opt-in, the reverse direction, and tools/test.py on a converted checkpoint (synthetic Waymo data)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pointformer.checkpoints import ConversionError, to_official, to_pointformer
from pointformer.checkpoints.cli import main
from pointformer.checkpoints.spconv_layout import LayoutError, detect_layout, from_krsc, to_krsc
from pointformer.config import load_config
from pointformer.engine.checkpoint import load_checkpoint
from pointformer.models.build import build_detector
from pointformer.utils.cli import run_tool

REPO = Path(__file__).resolve().parents[2]
PILLAR = "waymo_dsvt_pillar.yaml"
# A 120 x 120 pillar grid: the same parameters as the published model, a fraction of its BEV compute.
SMALL = ["voxelization.point_cloud_range=[-19.2,-19.2,-2.0,19.2,19.2,4.0]",
         "dataset.point_cloud_range=[-19.2,-19.2,-2.0,19.2,19.2,4.0]"]  # fmt: skip


def _detector(name: str = PILLAR, overrides=()):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_detector(load_config(name, list(overrides)))


@pytest.fixture(scope="module")
def pillar():
    torch.manual_seed(0)
    return _detector(PILLAR, SMALL).eval()


@pytest.fixture(scope="module")
def official(pillar) -> dict[str, torch.Tensor]:
    """An OpenPCDet-format DSVT-P state dict (the reverse conversion of a random model)."""
    return to_official(pillar.state_dict(), pillar, "openpcdet", iteration=5)


def _save_openpcdet(path: Path, state: dict, **extra) -> Path:
    torch.save({"model_state": state, "optimizer_state": {}, "epoch": 3, "it": 5, "version": "pcdet+0.6.0", **extra},
               path)  # fmt: skip
    return path


def test_unused_unfilled_and_shape_errors_list_the_tensors(pillar, official) -> None:
    extra = dict(official, **{"roi_head.fc.weight": torch.zeros(3)})
    with pytest.raises(ConversionError, match=r"1 openpcdet tensors are not used.*roi_head\.fc\.weight"):
        to_pointformer(extra, pillar, "openpcdet")
    assert to_pointformer(extra, pillar, "openpcdet", ignore_unused=["roi_head."]).ignored[-1] == "roi_head.fc.weight"

    missing = {k: v for k, v in official.items() if not k.startswith("dense_head.")}
    with pytest.raises(ConversionError, match=r"pointformer tensors are not filled.*head\.shared_conv\.0\.weight "
                                              r"<- dense_head\.shared_conv\.0\.weight"):  # fmt: skip
        to_pointformer(missing, pillar, "openpcdet")
    # A backbone-only checkpoint, allowed: the head keeps its initialisation and is listed.
    partial = to_pointformer(missing, pillar, "openpcdet", allow_unfilled=["head"])
    assert partial.unfilled and all(k.startswith("head.") for k in partial.unfilled)
    assert torch.equal(partial.state["head.shared_conv.0.weight"], pillar.state_dict()["head.shared_conv.0.weight"])

    wrong = dict(official, **{"vfe.pfn_layers.0.linear.weight": torch.zeros(96, 10)})  # no elongation channel
    with pytest.raises(ConversionError, match=r"vfe\.pfn_layers\.0\.linear\.weight \[96, 10\] -> "
                                              r"voxel_encoder\.layers\.0\.0\.weight expects \[96, 11\]"):  # fmt: skip
        to_pointformer(wrong, pillar, "openpcdet")


def test_dsvt_voxel_checkpoint_into_pillar_config_fails_clearly(pillar) -> None:
    voxel = _detector("waymo_dsvt_voxel.yaml")
    state = to_official(voxel.state_dict(), voxel, "openpcdet")
    with pytest.raises(ConversionError) as e:
        to_pointformer(state, pillar, "openpcdet")
    text = str(e.value)
    assert "165 openpcdet tensors are not used" in text and "backbone_3d.stage_1.0.encoder_list.0" in text
    assert "138 pointformer tensors are not filled" in text  # DSVT-P has 4 blocks in its stage, DSVT-V 1
    assert "backbone3d.stages.0.1.layers.0.attn.attn.in_proj_weight <- backbone_3d.stage_0.1.encoder_list.0" in text
    assert "[192, 3]" in text and "expects [192, 2]" in text  # 3D position embedding into a pillar stage


def test_spconv_layouts() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 3, 3, 3, 16, generator=g)
    for layout in ("KRSC", "RSKC", "RSCK"):
        assert torch.equal(to_krsc(from_krsc(w, layout), layout), w)
    assert from_krsc(w, "RSCK").shape == (3, 3, 3, 16, 32) and from_krsc(w, "RSKC").shape == (3, 3, 3, 32, 16)
    square = (32, 3, 3, 3, 32)
    assert detect_layout([("a", (3, 3, 3, 16, 32), (32, 3, 3, 3, 16)), ("b", (3, 3, 3, 32, 32), square)]) == "RSCK"
    assert detect_layout([("a", (3, 3, 3, 32, 16), (32, 3, 3, 3, 16)), ("b", (3, 3, 3, 32, 32), square)]) == "RSKC"
    assert detect_layout([]) is None
    # Only square convs: spconv 1.x and 2.x-native cannot be told apart; converting by shape alone
    # would silently leave them transposed.
    with pytest.raises(LayoutError, match="several spconv layouts.*--spconv-layout"):
        detect_layout([("b", (3, 3, 3, 32, 32), square)])
    with pytest.raises(LayoutError, match="no single spconv layout"):
        detect_layout([("a", (3, 3, 3, 16, 32), (32, 3, 3, 3, 16)), ("c", (3, 3, 3, 32, 16), (32, 3, 3, 3, 16))])


def test_cli_round_trip_and_reverse(pillar, official, tmp_path, capsys) -> None:
    src = _save_openpcdet(tmp_path / "dsvt_pillar.pth", official)
    out = tmp_path / "converted.pth"
    assert main(["--from", "openpcdet", "--cfg", PILLAR, *[a for s in SMALL for a in ("--set", s)], str(src),
                 str(out)]) == 0  # fmt: skip
    assert "ignored global_step" in capsys.readouterr().out
    state = load_checkpoint(out)
    assert state["converted_from"]["format"] == "openpcdet" and state["converted_from"]["epoch"] == 3
    for k, v in pillar.state_dict().items():
        assert torch.equal(state["model"][k], v), k
    back = tmp_path / "back.pth"
    assert main(["--from", "openpcdet", "--cfg", PILLAR, "--reverse", str(out), str(back)]) == 0
    written = torch.load(back, weights_only=True)
    assert written["model_state"].keys() == official.keys() and written["epoch"] == 3
    assert all(torch.equal(written["model_state"][k], v) for k, v in official.items())


def tool(argv: list[str]) -> int:
    """The command through its error boundary, as tools/convert_checkpoint.py runs it."""
    return run_tool(main, argv, prog="convert_checkpoint.py")


def test_cli_errors_exit_2_without_traceback(official, tmp_path, capsys) -> None:
    out = tmp_path / "out.pth"
    assert tool(["--from", "openpcdet", "--cfg", PILLAR, str(tmp_path / "none.pth"), str(out)]) == 2
    assert "none.pth: no such checkpoint file" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert tool(["--from", "openpcdet", "--cfg", PILLAR, str(bad), str(out)]) == 2
    assert "not a readable torch checkpoint" in capsys.readouterr().err
    (tmp_path / "dict.pth").write_bytes(b"")
    torch.save({"model_state": {"a": 1}}, tmp_path / "dict.pth")
    assert tool(["--from", "openpcdet", "--cfg", PILLAR, str(tmp_path / "dict.pth"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "'model_state' entry is not a state dict (non-tensor entries a)" in err and "Traceback" not in err
    official_file = _save_openpcdet(tmp_path / "official.pth", official)
    assert tool(["--from", "openpcdet", "--cfg", PILLAR, "--reverse", str(official_file), str(out)]) == 2
    assert "--reverse reads a pointformer checkpoint" in capsys.readouterr().err
    voxel = _save_openpcdet(tmp_path / "wrong.pth", official)
    assert tool(["--from", "openpcdet", "--cfg", "waymo_centerpoint.yaml", str(voxel), str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("convert_checkpoint.py: error: ")
        and "not used by the pointformer model" in err
        and not out.exists()
    )


def test_weights_only_then_explicit_trust_pickle(official, tmp_path, capsys) -> None:
    # mmcv/OpenPCDet files can hold numpy scalars, which weights_only refuses to unpickle.
    src = _save_openpcdet(tmp_path / "numpy.pth", official, best=np.float64(0.7))
    out = tmp_path / "out.pth"
    args = ["--from", "openpcdet", "--cfg", PILLAR, *[a for s in SMALL for a in ("--set", s)], str(src), str(out)]
    assert tool(args) == 2
    err = capsys.readouterr().err
    assert "weights_only=True" in err and "numpy" in err and "--trust-pickle" in err and not out.exists()
    assert main([*args, "--trust-pickle"]) == 0 and out.exists()


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_waymo_root(tmp_path_factory, captured) -> Path:
    """The tiny Waymo v1 sequences converted with the real converter."""
    from pointformer.data.convert import main as convert_main

    base = tmp_path_factory.mktemp("tiny_waymo_convert")
    inputs = _load("tiny_waymo", REPO / "tests" / "data" / "tiny_waymo.py").write_tiny_waymo(base / "raw")
    with captured():
        assert convert_main(["--dataset", "waymo", "--root", str(inputs["v1"]), "--out", str(base / "data"),
                             "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    return base / "data"


# Every Waymo config with an official counterpart, at its published widths over a reduced range
# (the windows, poolings and strides still divide it; the parameters are unchanged).
TOOL_RUNS = {"waymo_dsvt_pillar": ("openpcdet", 11.52), "waymo_dsvt_voxel": ("openpcdet", 11.52),
             "waymo_scatterformer": ("openpcdet", 11.52), "waymo_centerpoint": ("openpcdet", 12.8),
             "waymo_flatformer": ("mmdet3d", 12.8), "waymo_centerpoint_pillar": ("openpcdet", 12.8)}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOOL_RUNS))
def test_tools_convert_then_test_on_synthetic_waymo(name, tiny_waymo_root, tmp_path, capsys) -> None:
    """The documented commands on each config: tools/convert_checkpoint.py on an official-format file,
    then tools/test.py --ckpt on the result (synthetic Waymo frames, the official metric lines)."""
    fmt, h = TOOL_RUNS[name]
    sets = [a for s in (f"voxelization.point_cloud_range=[-{h},-{h},-2.0,{h},{h},4.0]",
                        f"dataset.point_cloud_range=[-{h},-{h},-2.0,{h},{h},4.0]") for a in ("--set", s)]  # fmt: skip
    torch.manual_seed(0)
    det = _detector(f"{name}.yaml", [sets[1], sets[3]])
    state = to_official(det.state_dict(), det, fmt)
    src = tmp_path / "official.pth"
    torch.save({"model_state": state} if fmt == "openpcdet" else {"state_dict": state}, src)
    out = tmp_path / "converted.pth"
    run = subprocess.run([sys.executable, "tools/convert_checkpoint.py", "--from", fmt, "--cfg", f"{name}.yaml",
                          *sets, str(src), str(out)], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "tools/test.py", "--cfg", f"{name}.yaml", "--ckpt", str(out), *sets,
                          "--set", f"dataset.root={tiny_waymo_root}", "--max-frames", "1", "--device", "cpu",
                          "--no-progress", "--out-dir", str(tmp_path / "test")],
                         cwd=REPO, capture_output=True, text=True, env=env)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1" in run.stdout + run.stderr
