"""The ``ws3d`` command.

    ws3d data synth --out DIR --split {2d,mv,test} --n N [--size S] [--seed K] [--rig h36m|orbit|mixed]
    ws3d data sheet DIR [--split SPLIT] [--out FILE] [--count N]
    ws3d data tracklets DETECTIONS --out FILE [--min-length 5]

Errors in the input (bad arguments, missing or malformed files) print one line, not a
traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _data_synth(args) -> None:
    from ws3d.data.synthetic import SynthConfig, write_shards

    cfg = SynthConfig(split=args.split, n=args.n, size=args.size, seed=args.seed, rig=args.rig)
    meta = write_shards(cfg, args.out, workers=args.workers, shard_size=args.shard_size)
    rate = f"{meta['seconds']:.1f} s: {meta['images_per_second']:.0f} images/s on {meta['workers']} workers"
    print(f"wrote {cfg.n} {cfg.split} images ({len(meta['shards'])} shards) to {args.out} in {rate}")


def _data_sheet(args) -> None:
    from ws3d.data.sheet import contact_sheet
    from ws3d.data.synthetic import SPLITS, ShardDataset

    root = Path(args.dir)
    splits = [args.split] if args.split else [s for s in SPLITS if (root / f"{s}.json").is_file()]
    if not splits:
        raise FileNotFoundError(f"{root}: no rendered split (expected 2d.json, mv.json or test.json)")
    for split in splits:
        out = Path(args.out) if args.out and len(splits) == 1 else root / f"sheet_{split}.png"
        contact_sheet(ShardDataset(root, split), out, count=args.count)
        print(f"wrote {out}")


def _data_tracklets(args) -> None:
    from ws3d.data.tracklets import build_tracklets, load_detections, save_tracklets

    frames = load_detections(args.detections)
    tracklets = build_tracklets(frames, min_length=args.min_length)
    save_tracklets(tracklets, args.out)
    views = sum(len(t.frames) for t in tracklets)
    print(f"wrote {len(tracklets)} tracklets ({views} views) to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ws3d", description="Weakly supervised 3D human pose from multi-view images.")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="render, inspect and prepare data").add_subparsers(dest="action",
                                                                                            required=True)  # fmt: skip
    synth = data.add_parser("synth", help="render a split of the synthetic multi-view data set into .npz shards")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--split", required=True, choices=["2d", "mv", "test"])
    synth.add_argument("--n", type=int, required=True, help="number of images (mv: all views of all groups)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--rig", default="mixed", choices=["h36m", "orbit", "mixed"])
    synth.add_argument("--workers", type=int, default=os.cpu_count(), help="render processes (default: all cores)")
    synth.add_argument("--shard-size", type=int, default=1000, help="images per .npz shard")
    synth.set_defaults(run=_data_synth)
    sheet = data.add_parser("sheet", help="write a contact-sheet PNG of rendered samples with their 2D skeletons")
    sheet.add_argument("dir", help="directory written by `ws3d data synth`")
    sheet.add_argument("--split", choices=["2d", "mv", "test"], help="default: every split found in DIR")
    sheet.add_argument("--out", help="PNG path (default DIR/sheet_SPLIT.png)")
    sheet.add_argument("--count", type=int, default=48, help="samples on the sheet")
    sheet.set_defaults(run=_data_sheet)
    track = data.add_parser("tracklets", help="link per-frame 2D detections of static people into multi-view samples")
    track.add_argument("detections", help="detections .json or .npz (format in the README)")
    track.add_argument("--out", required=True, help="output .npz")
    track.add_argument("--min-length", type=int, default=5, help="drop tracklets shorter than this many frames")
    track.set_defaults(run=_data_tracklets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError, KeyError) as error:  # the user's input, not a bug: one line
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"ws3d: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
