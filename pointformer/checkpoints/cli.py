"""``tools/convert_checkpoint.py``: official checkpoints -> pointformer checkpoints, and back.

    python tools/convert_checkpoint.py --from openpcdet --cfg waymo_dsvt_pillar.yaml dsvt_pillar.pth dsvt_p.pth
    python tools/convert_checkpoint.py --from openpcdet --cfg waymo_dsvt_pillar.yaml --reverse dsvt_p.pth back.pth

Forward: IN is an official checkpoint (OpenPCDet and its DSVT / ScatterFormer forks: ``model_state``;
FlatFormer's mmdet3d fork: ``state_dict``), OUT a pointformer checkpoint ``{"model": state_dict,
"converted_from": {...}}`` that ``tools/test.py --ckpt``, ``tools/export.py --ckpt`` take. With
``--reverse``, IN is a pointformer checkpoint and OUT is written in the ``--from`` format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pointformer.checkpoints.convert import FORMATS, PARTS, format_module, to_official, to_pointformer
from pointformer.checkpoints.io import read_checkpoint
from pointformer.checkpoints.mapping import ConversionError
from pointformer.checkpoints.spconv_layout import LAYOUTS, SPCONV_VERSIONS
from pointformer.config import ConfigError, load_config
from pointformer.engine.checkpoint import save_checkpoint
from pointformer.models.build import build_detector


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="fmt", required=True, choices=FORMATS, help="the official checkpoint's toolkit")
    p.add_argument("--cfg", required=True, help="pointformer config of the same model (path or name under configs/)")
    p.add_argument("input", metavar="IN", type=Path, help="checkpoint to convert")
    p.add_argument("output", metavar="OUT", type=Path, help="converted checkpoint to write")
    p.add_argument(
        "--reverse", action="store_true", help="IN is a pointformer checkpoint; write OUT in the --from format"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")  # fmt: skip
    p.add_argument("--trust-pickle", action="store_true",
                   help="load IN with the full unpickler when weights_only cannot read it (runs code in the file: "
                        "only for files you trust)")  # fmt: skip
    layouts = ", ".join(f"{k} = {v}" for k, v in SPCONV_VERSIONS.items())
    p.add_argument("--spconv-layout", default=None, choices=("auto", *LAYOUTS),
                   help=f"sparse-conv weight layout ({layouts}); forward default auto (detected from all "
                        "sparse-conv weights), reverse default KRSC")  # fmt: skip
    p.add_argument("--allow-unfilled", action="append", default=[], choices=PARTS, metavar="PART",
                   help="a pointformer part the official file may lack (kept at its initialisation, e.g. "
                        "a backbone-only checkpoint for fine-tuning); repeatable; " + ", ".join(PARTS))  # fmt: skip
    p.add_argument(
        "--ignore-unused",
        action="append",
        default=[],
        metavar="PREFIX",
        help="official key prefix that may stay unused (e.g. roi_head. of a two-stage model); repeatable",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the command; a ``ConversionError`` (an ``InputError``) is reported by ``tools/convert_checkpoint.py``'s
    error boundary (``pointformer.utils.cli.run_tool``): one line on stderr, exit status 2."""
    print(run(parser().parse_args(argv)))
    return 0


def _build(cfg_name: str, overrides: list[str]):
    try:
        cfg = load_config(cfg_name, overrides)
        return cfg, build_detector(cfg)
    except (ConfigError, FileNotFoundError, ImportError) as e:
        raise ConversionError(f"{cfg_name}: {e}") from None


def run(args: argparse.Namespace) -> str:
    """Does the conversion of ``args`` (see ``parser``); returns the summary line."""
    if args.input.resolve() == args.output.resolve():
        raise ConversionError(f"{args.output}: OUT must differ from IN")
    cfg, detector = _build(args.cfg, args.overrides)
    loaded = read_checkpoint(args.input, trust_pickle=args.trust_pickle)
    fmt = format_module(args.fmt)
    if args.reverse:
        if loaded.key != "model":
            raise ConversionError(
                f"{args.input}: --reverse reads a pointformer checkpoint (a dict with 'model'), this file holds "
                f"{loaded.key or 'a bare state dict'!r}; without --reverse it is converted into pointformer"
            )
        layout = args.spconv_layout or "KRSC"
        if layout == "auto":
            raise ConversionError("--reverse writes one spconv layout: name it (KRSC, RSKC or RSCK), not auto")
        iteration = int(loaded.meta.get("iteration", 0) or 0)
        epoch = int(loaded.meta.get("epoch", 0) or 0)
        state = to_official(loaded.state, detector, args.fmt, layout, iteration, source=str(args.input))
        save_checkpoint(fmt.wrap(state, epoch, iteration), args.output)
        sparse = any(v.dim() == 5 for v in detector.state_dict().values())
        note = f" (spconv layout {layout}, {SPCONV_VERSIONS[layout]})" if sparse else ""
        return f"wrote {args.output}: {len(state)} {args.fmt} tensors{note} from {args.input}"
    converted = to_pointformer(
        loaded.state, detector, args.fmt, args.spconv_layout or "auto", args.allow_unfilled, args.ignore_unused,
        source=str(args.input),
    )  # fmt: skip
    info = {
        "format": args.fmt,
        "file": args.input.name,
        "config": str(cfg.path or args.cfg),
        "spconv_layout": converted.spconv_layout or "",
        "ignored": converted.ignored,
        "unfilled": converted.unfilled,
        **{k: v for k, v in loaded.meta.items()},
    }
    save_checkpoint({"model": converted.state, "converted_from": info}, args.output)
    notes = []
    if converted.spconv_layout:
        notes.append(f"spconv layout {converted.spconv_layout} ({SPCONV_VERSIONS[converted.spconv_layout]})")
    if converted.ignored:
        notes.append(f"ignored {', '.join(converted.ignored)}")
    if converted.unfilled:
        notes.append(f"{len(converted.unfilled)} tensors left at initialisation (--allow-unfilled)")
    tail = f" ({'; '.join(notes)})" if notes else ""
    return f"wrote {args.output}: {len(converted.state)} pointformer tensors from {args.input}{tail}"
