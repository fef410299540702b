"""The ``ws3d`` command.

    ws3d data synth --out DIR --split {2d,mv,test} --n N [--size S] [--seed K] [--rig h36m|orbit|mixed|studio]
    ws3d data sheet DIR [--split SPLIT] [--out FILE] [--count N] [--augment crop|public]
    ws3d data tracklets DETECTIONS --out FILE [--images DIR] [--focal F] [--min-length 5]
    ws3d data records {mpii,h36m,h36m-multiview,3dhp-train,3dhp-test} SOURCE --out FILE [--images DIR] ...
    ws3d data records multicam DETECTIONS DETECTIONS... --frames DIR|VIDEO ... --out FILE [--intrinsics CALIB]
                      [--focal F] [--offsets O ...] [--every N] [--threshold 0.3] [--images DIR]
                      [--video-frames DIR]
    ws3d calibrate DETECTIONS DETECTIONS... --out TOML [--intrinsics CALIB | --size W H [--focal F]]
                   [--reference CALIB] [--offsets O ...] [--max-offset N] [--every N] [--threshold 0.3] ...
    ws3d train CONFIG [section.key=value ...]
    ws3d ablation [--shift] [--config CONFIG] [--settings NAME ...] [--test DIR ...] [--runs DIR] [--out DIR]
                  [--oracle CKPT] [--seeds N] [--reference JSON] [key=value ...]
    ws3d eval CKPT --data DIR [--split test] [--json]  |  ws3d eval CKPT --data RECORDS.npz [--json]
    ws3d export CKPT OUT --data DIR [--split test]
    ws3d predict CKPT IMAGE... [--out DIR] [--focal F]
    ws3d bench [SWEEP ARGS ...]

Errors in the input (bad arguments, missing or malformed files: :class:`ws3d.errors.InputError`)
print one line, not a traceback, and exit with status 2; any other error is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ws3d.config import AUGMENTS
from ws3d.errors import InputError, MissingFileError


def _data_synth(args) -> None:
    from ws3d.data.synthetic import SynthConfig, write_shards

    cfg = SynthConfig(split=args.split, n=args.n, size=args.size, seed=args.seed, rig=args.rig, domain=args.domain)
    meta = write_shards(cfg, args.out, workers=args.workers, shard_size=args.shard_size)
    rate = f"{meta['seconds']:.1f} s: {meta['images_per_second']:.0f} images/s on {meta['workers']} workers"
    print(f"wrote {cfg.n} {cfg.split} images ({len(meta['shards'])} shards) to {args.out} in {rate}")


def _data_sheet(args) -> None:
    from ws3d.data.sheet import contact_sheet
    from ws3d.data.synthetic import SPLITS, ShardDataset

    root = Path(args.dir)
    splits = [args.split] if args.split else [s for s in SPLITS if (root / f"{s}.json").is_file()]
    if not splits:
        raise MissingFileError(f"{root}: no rendered split (expected 2d.json, mv.json or test.json)")
    for split in splits:
        dataset, stem = ShardDataset(root, split), f"sheet_{split}"
        if args.augment:  # the crops training makes of them
            from ws3d.data.sheet import TrainingCrops
            from ws3d.data.transforms import PoseTransform

            size = int(dataset[0]["image"].shape[0])
            dataset, stem = TrainingCrops(dataset, PoseTransform(size, augment=args.augment)), f"{stem}_{args.augment}"
        out = Path(args.out) if args.out and len(splits) == 1 else root / f"{stem}.png"
        contact_sheet(dataset, out, count=args.count)
        print(f"wrote {out}")


def _data_tracklets(args) -> None:
    from ws3d.data.records import save_records
    from ws3d.data.tracklets import build_tracklets, load_detections, tracklet_records

    frames = load_detections(args.detections)
    tracklets = build_tracklets(frames, min_length=args.min_length)
    images = Path(args.images) if args.images else Path(args.detections).parent
    save_records(args.out, tracklet_records(tracklets, images, args.focal), images)
    views = sum(len(t.frames) for t in tracklets)
    print(f"wrote {len(tracklets)} tracklets ({views} views) as a multi-view record set to {args.out} "
          f"(images under {images.resolve()})")


def _data_multicam(args) -> None:
    from ws3d.data.multicam import multicam_records
    from ws3d.data.records import save_records

    if not args.frames:
        raise InputError("multicam needs --frames: one frame folder or video per camera, in the detections' order")
    out = Path(args.out)
    video_frames = args.video_frames or out.with_name(out.name.removesuffix(".npz") + "_frames")
    made = multicam_records(args.source, args.frames, root=args.images, intrinsics_file=args.intrinsics,
                            focal=args.focal, format=args.format, order=args.order, offsets=args.offsets,
                            every=args.every, threshold=0.3 if args.threshold is None else args.threshold,
                            video_frames=video_frames)  # fmt: skip
    save_records(args.out, made.records, made.root)
    print(made.summary())
    if made.decoded:
        print(f"decoded {len(made.decoded)} frames of the videos into {Path(video_frames).resolve()}")
    print(f"wrote {len(made.records['image'])} records in {made.groups} groups (rig 0, {len(args.source)} cameras) "
          f"to {args.out} (images under {made.root})")


def _data_records(args) -> None:
    from ws3d.data import h36m, mpi3dhp, mpii
    from ws3d.data.records import concat_records, save_records

    if args.kind == "multicam":
        return _data_multicam(args)
    multicam_only = [f"--{k.replace('_', '-')}" for k in ("frames", "intrinsics", "focal", "format", "order",
                                                          "offsets", "video_frames")
                     if getattr(args, k) is not None]  # fmt: skip
    if multicam_only or args.every != 1 or args.threshold is not None:
        raise InputError(f"{' '.join(multicam_only) or '--every/--threshold'}: for multicam only")
    if len(args.source) != 1:
        raise InputError(f"{args.kind} takes one SOURCE, got {len(args.source)}: {' '.join(args.source)}")
    source = Path(args.source[0])
    if args.kind.startswith("3dhp") and not args.sequences:
        raise InputError(f"{args.kind} needs --sequences (3dhp-train: SUBJECT/SEQUENCE such as 1/2; 3dhp-test: 1..6)")
    if args.kind.startswith("h36m") and not args.images:
        raise InputError(f"{args.kind} needs --images: the folder its image paths are relative to")
    if args.kind == "mpii":  # annot/train.json with the images in images/ beside annot/
        records, images = mpii.load_mpii(source), source.parent.parent
    elif args.kind == "h36m":
        records, images = h36m.load_mmpose(source, args.camera_file), None  # --images, checked above
    elif args.kind == "h36m-multiview":
        margin = h36m.MULTIVIEW_BOX_MARGIN if args.box_margin is None else args.box_margin
        records, images = h36m.load_multiview_labels(source, args.image_folder, margin), None
    elif args.kind == "3dhp-train":
        parts = []
        for item in args.sequences:
            subject, sep, sequence = item.partition("/")
            if not (sep and subject.isdigit() and sequence.isdigit()):
                raise InputError(f"--sequences: {item!r} is not SUBJECT/SEQUENCE (e.g. 1/2)")
            parts.append(mpi3dhp.load_train_sequence(source, int(subject), int(sequence), args.cameras))
        records, images = concat_records(parts), source
    else:
        if not all(item.isdigit() for item in args.sequences):
            raise InputError(f"--sequences: test sequences are numbers (1..6), got {' '.join(args.sequences)}")
        records = concat_records([mpi3dhp.load_test_sequence(source, int(item)) for item in args.sequences])
        images = source
    images = args.images or images
    save_records(args.out, records, images)
    groups = f" in {len(set(records['group'].tolist()))} groups" if "group" in records else ""
    print(f"wrote {len(records['image'])} records{groups} to {args.out} (images under {Path(images).resolve()})")


def _calibrate(args) -> None:
    from ws3d.calibrate import calibrate_files, compare_to_reference, report
    from ws3d.data.calibration_files import read_calibration, write_toml

    if args.intrinsics and args.focal is not None:
        raise InputError("--focal is for nominal intrinsics; --intrinsics gives every camera's K")
    # The reference is read before the calibration, so that a wrong one fails at once and leaves no file behind.
    reference = read_calibration(args.reference) if args.reference else None
    if reference is not None and len(reference) != len(args.detections):
        raise InputError(f"--reference {args.reference}: {len(reference)} cameras, but {len(args.detections)} "
                         "detections paths were given (the same cameras in the same order)")  # fmt: skip
    calibration = calibrate_files(args.detections, intrinsics_file=args.intrinsics, focal=args.focal,
                                  size=args.size, format=args.format, order=args.order, offsets=args.offsets,
                                  every=args.every, threshold=args.threshold, max_offset=args.max_offset)  # fmt: skip
    errors = compare_to_reference(calibration, reference, f"--reference {args.reference}") if reference else None
    write_toml(args.out, calibration.cameras, units=args.units)
    print(report(calibration, errors))
    print(f"wrote {args.out} ({len(calibration.cameras)} cameras, translations in {args.units}; the world is "
          f"{calibration.cameras[0].name}'s frame)")


def _train(args) -> None:
    from ws3d.config import load_config
    from ws3d.trainer import train

    cfg = load_config(args.config, args.overrides)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{cfg.train.stage}: {result['step']} steps in {result['seconds']:.0f} s; "
              f"checkpoint {cfg.run_dir}/last.pt, plots {cfg.run_dir}/training.png")  # fmt: skip
        if result["val"]:
            print(_format_metrics(result["val"]))


def _ablation(args) -> None:
    from ws3d.ablation import ORACLE, SHIFT_CONFIG, markdown, run_ablation, stem

    out = Path(args.out) if args.out else None
    config = args.config or (SHIFT_CONFIG if args.shift else "train/synthetic_weak.yaml")
    names = args.settings or _ablation_settings(args.shift)
    results = run_ablation(config, names, args.test, Path(args.runs), out, args.overrides, shift=args.shift,
                           oracle=args.oracle or ORACLE, seeds=args.seeds)  # fmt: skip
    print(markdown(results, results["tests"]))
    rows = results["settings"]
    if "2D-only" in rows:
        for name, row in rows.items():
            if name not in ("2D-only", "2D-oracle"):
                ratio = rows["2D-only"]["mpjpe"] / row["mpjpe"]
                px = rows["2D-only"]["px2d"] / row["px2d"]
                print(f"2D-only / {name}: MPJPE {rows['2D-only']['mpjpe']:.1f} / {row['mpjpe']:.1f} mm = {ratio:.2f}, "
                      f"2D {rows['2D-only']['px2d']:.2f} / {row['px2d']:.2f} px = {px:.2f}")  # fmt: skip
    if args.reference:
        _print_reference(args.reference, results)
    if out is not None:
        print(f"wrote {out / stem(args.shift)}.json and .md")


def _print_reference(path: str, results: dict) -> None:
    """The rows of a committed ablation that this run did not train, for reference."""
    from ws3d.ablation import markdown

    try:
        committed = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"--reference {path}: cannot read it ({error})") from None
    rows = {k: v for k, v in committed["settings"].items() if k not in results["settings"]}
    if rows:
        print(f"\ncommitted in {path} ({committed['date']}, {committed['machine']}, {committed['cores']} cores; "
              "not retrained here):")  # fmt: skip
        print(markdown({**committed, "settings": rows}, committed["tests"][:1]))


def _format_metrics(m: dict) -> str:
    """The metrics that ``m`` has (:func:`ws3d.evaluate.metrics_from_predictions` leaves out
    what the data cannot support), and a word on each one it has not."""
    solvable = (f"3D pose solvable for {m['valid']:.1%}" if "valid" in m
                else "no intrinsics: no 3D pose")  # fmt: skip
    lines = [f"  {int(m['images'])} test images, {solvable}"]
    if "mpjpe" in m:
        if m["images_3d"] < m["images"]:
            lines.append(f"  3D metrics over the {int(m['images_3d'])} images with 3D labels and intrinsics")
        lines += [f"  MPJPE {m['mpjpe']:7.1f} mm   N-MPJPE {m['n_mpjpe']:7.1f} mm   P-MPJPE {m['p_mpjpe']:7.1f} mm",
                  f"  PCK@150mm {100 * m['pck150']:5.1f} %   AUC {100 * m['auc']:5.1f} %   "
                  f"NPCK {100 * m['npck150']:5.1f} %"]  # fmt: skip
    else:
        lines.append("  no 3D labels: MPJPE, N-MPJPE, P-MPJPE, PCK, AUC and NPCK not reported")
    lines.append(f"  2D error {m['px2d']:.2f} px" if "px2d" in m else "  no 2D labels: no 2D error")
    return "\n".join(lines)


def _eval(args) -> None:
    from ws3d.data.records import open_records
    from ws3d.data.synthetic import ShardDataset
    from ws3d.evaluate import evaluate
    from ws3d.model import model_from_checkpoint

    records = Path(args.data).is_file()
    if records and args.split is not None:
        raise InputError(f"--split {args.split}: {args.data} is a record-set file, which is one split already; "
                         "--split picks a split of a `ws3d data synth` directory")  # fmt: skip
    model, cfg = model_from_checkpoint(args.checkpoint, args.device)
    data = open_records(args.data) if records else ShardDataset(args.data, args.split or "test")
    metrics = evaluate(model, data, cfg.data.size, progress=not args.json)
    if args.json:  # every key, null where the data cannot support the metric (JSON has no NaN)
        keys = ("mpjpe", "n_mpjpe", "p_mpjpe", "pck150", "auc", "px2d")
        print(json.dumps({k: metrics.get(k) for k in keys}, allow_nan=False))
    else:
        print(f"{args.checkpoint} on {args.data}" + ("" if records else f" ({args.split or 'test'})") + ":")
        print(_format_metrics(metrics))


def _export(args) -> None:
    from ws3d.checkpoint import export_checkpoint
    from ws3d.data.synthetic import ShardDataset
    from ws3d.evaluate import evaluate
    from ws3d.model import model_from_checkpoint

    model, cfg = model_from_checkpoint(args.checkpoint)
    metrics = evaluate(model, ShardDataset(args.data, args.split), cfg.data.size, progress=True)
    metrics = {**metrics, "data": f"{args.data} ({args.split})"}
    slim = export_checkpoint(args.checkpoint, args.out, metrics)
    size = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.1f} MB): step {slim['step']}, git {slim['git']}")
    print(_format_metrics(metrics))


def _predict(args) -> None:
    from ws3d.predict import predict_images

    for line in predict_images(args.checkpoint, args.images, args.out, focal=args.focal, device=args.device):
        print(line)


def _bench(args) -> int:
    import subprocess

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "sweep.py"
    if not script.is_file():
        raise MissingFileError(f"{script}: the benchmarks need a source checkout of ws3d")
    return subprocess.run([sys.executable, str(script), *args.sweep_args]).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ws3d", description="Weakly supervised 3D human pose from multi-view images.")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="render, inspect and prepare data").add_subparsers(dest="action",
                                                                                            required=True)  # fmt: skip
    synth = data.add_parser("synth", help="render a split of the synthetic multi-view data set into .npz shards")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--split", required=True, choices=["2d", "mv", "val", "test"])
    synth.add_argument("--n", type=int, required=True, help="number of images (mv: all views of all groups)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--rig", default="mixed", choices=["h36m", "orbit", "mixed", "studio"])
    synth.add_argument("--domain", default="source", help="source (the default: in-the-wild 2D data), target (one "
                       "capture setting), or target-FACTOR for one of its factors alone (ws3d/data/domains.py)")
    synth.add_argument("--workers", type=int, default=os.cpu_count(), help="render processes (default: all cores)")
    synth.add_argument("--shard-size", type=int, default=1000, help="images per .npz shard")
    synth.set_defaults(run=_data_synth)
    sheet = data.add_parser("sheet", help="write a contact-sheet PNG of rendered samples with their 2D skeletons")
    sheet.add_argument("dir", help="directory written by `ws3d data synth`")
    sheet.add_argument("--split", choices=["2d", "mv", "val", "test"], help="default: every split found in DIR")
    sheet.add_argument("--out", help="PNG path (default DIR/sheet_SPLIT.png)")
    sheet.add_argument("--count", type=int, default=48, help="samples on the sheet")
    sheet.add_argument("--augment", choices=AUGMENTS,
                       help="draw the crops training makes with this data.augment (default: as stored)")  # fmt: skip
    sheet.set_defaults(run=_data_sheet)
    track = data.add_parser("tracklets", help="link per-frame 2D detections of static people into multi-view samples")
    track.add_argument("detections", help="detections .json or .npz (format in the README)")
    track.add_argument("--out", required=True, help="output .npz")
    track.add_argument("--min-length", type=int, default=5, help="drop tracklets shorter than this many frames")
    track.add_argument("--images", help="folder the detections' image names are relative to (default: the "
                       "detections file's folder)")
    track.add_argument("--focal", type=float, help="focal length of the video in pixels (default: 1.2 x the "
                       "longer image side, a ~45 degree field of view)")
    track.set_defaults(run=_data_tracklets)
    records = data.add_parser("records", help="convert a real data set's annotations into a record-set file for "
                              "training (data.records_*) and ws3d eval")  # fmt: skip
    records.add_argument("kind", choices=["mpii", "h36m", "h36m-multiview", "3dhp-train", "3dhp-test", "multicam"])
    records.add_argument("source", nargs="+", help="mpii: annot/*.json; h36m: MMPose h36m_*.npz; h36m-multiview: "
                         "learnable-triangulation labels .npy; 3dhp-*: the data set root; multicam: one detections "
                         "path per camera, in camera order (formats, and the one person tracked per camera, as for "
                         "ws3d calibrate)")  # fmt: skip
    records.add_argument("--out", required=True, help="output .npz")
    records.add_argument("--images", help="folder the image paths are relative to (mpii and 3dhp: found)")
    records.add_argument("--camera-file", help="h36m: cameras.pkl (default: next to SOURCE or one folder up)")
    records.add_argument("--cameras", type=int, nargs="+", help="3dhp-train: camera indices (default: those "
                         "whose imageFrames/video_C folder exists; the official download has 0 1 2 4 5 6 7 8)")
    records.add_argument("--image-folder", default="imageSequence-undistorted",
                         help="h36m-multiview: the frames' folder in each action (default: the undistorted "
                         "frames the labels' uv match; imageSequence: the distorted originals)")  # fmt: skip
    records.add_argument("--box-margin", type=float, help="h36m-multiview: the factor the labelled person box is "
                         "enlarged by (default 1.5: the person then fills ~2/3 of the crop, as in ws3d's synthetic "
                         "crops; learnable-triangulation's own configs use 1.0)")  # fmt: skip
    records.add_argument("--sequences", nargs="+", help="3dhp-train: SUBJECT/SEQUENCE ...; 3dhp-test: 1..6")
    records.add_argument("--frames", nargs="+", metavar="DIR|VIDEO", help="multicam: per camera, in the "
                         "detections' order, a frame folder (images named with their frame number: "
                         "cam1/000012.jpg) or a video file (.mp4, .avi, .mov, .mkv, ...: frame number = the "
                         "0-based index in the video, as OpenPose numbers its JSON); --images defaults to the "
                         "common parent of the frame folders and the videos' --video-frames folders")  # fmt: skip
    records.add_argument("--video-frames", metavar="DIR", help="multicam: where the frames of the kept views are "
                         "written from the videos, as DIR/<video name>/<frame>.jpg (default: beside --out, "
                         "named after it: OUT_frames)")  # fmt: skip
    records.add_argument("--intrinsics", metavar="CALIB", help="multicam: a calibration file of the same cameras in "
                         "the same order: K (and R, t where it has them); the 2D joints are undistorted, the images "
                         "stay as they are (default: nominal K from the image size)")  # fmt: skip
    records.add_argument("--focal", type=float, help="multicam without --intrinsics: focal length in px (default "
                         "1.2 x the longer image side)")  # fmt: skip
    records.add_argument("--format", choices=["openpose", "coco", "mediapipe", "ws3d"], help="multicam: detections "
                         "format (default: from the content)")  # fmt: skip
    records.add_argument("--order", help="multicam: keypoint order of OpenPose / COCO files (default: from the "
                         "keypoint count)")  # fmt: skip
    records.add_argument("--offsets", type=int, nargs="+", metavar="O", help="multicam: per camera, its frame f is "
                         "moment f + O (default all 0)")  # fmt: skip
    records.add_argument("--every", type=int, default=1, metavar="N", help="multicam: every N-th moment (default 1)")
    records.add_argument("--threshold", type=float, help="multicam: joints below this confidence get vis 0 "
                         "(default 0.3)")  # fmt: skip
    records.set_defaults(run=_data_records)
    cal = commands.add_parser("calibrate", help="a static rig's cameras from the 2D detections of the people they "
                              "film; writes a Pose2Sim/anipose calibration TOML")  # fmt: skip
    cal.add_argument("detections", nargs="+", help="one per camera, in camera order: a folder of OpenPose JSON, "
                     "COCO keypoint results, a MediaPipe .npy or ws3d detections (README); one person tracked "
                     "per camera (started on the most confident, then the nearest to its last pose; frames where "
                     "it is lost or ambiguous keep none and are counted)")  # fmt: skip
    cal.add_argument("--out", required=True, help="the calibration TOML to write (Pose2Sim/anipose layout)")
    cal.add_argument("--intrinsics", metavar="CALIB", help="a calibration file of the same cameras in the same "
                     "order (TOML, Qualisys, OpenCV): K, distortion, sizes and names from it, extrinsics ignored")
    cal.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="image width and height in px "
                     "(required without --intrinsics)")  # fmt: skip
    cal.add_argument("--focal", type=float, help="without --intrinsics: the focal length to start from, px "
                     "(default 1.2 x the longer side); each camera's is refined")  # fmt: skip
    cal.add_argument("--reference", metavar="CALIB", help="a calibration of the same cameras to compare with: "
                     "prints rotation and baseline-direction errors (degrees) and the baseline scale")  # fmt: skip
    cal.add_argument("--format", choices=["openpose", "coco", "mediapipe", "ws3d"], help="detections format "
                     "(default: from the content)")  # fmt: skip
    cal.add_argument("--order", help="keypoint order of OpenPose / COCO files (default: from the keypoint count)")
    cal.add_argument("--offsets", type=int, nargs="+", metavar="O", help="per camera: its frame f is the first "
                     "camera's frame f + O (default all 0)")  # fmt: skip
    cal.add_argument("--max-offset", type=int, default=0, metavar="N", help="search each camera's offset within "
                     "+-N frames beyond --offsets (default 0: in step)")  # fmt: skip
    cal.add_argument("--every", type=int, default=1, metavar="N", help="use every N-th frame (default 1)")
    cal.add_argument("--threshold", type=float, default=0.3, help="joints below this confidence are ignored "
                     "(default 0.3)")  # fmt: skip
    cal.add_argument("--units", choices=["m", "cm", "mm"], default="m", help="translation unit of the TOML "
                     "(default m, Pose2Sim's; anipose: the board's)")  # fmt: skip
    cal.set_defaults(run=_calibrate)

    device = "cuda" if _cuda() else "cpu"
    train = commands.add_parser("train", help="train one stage (pretrain2d, weak or full) from a YAML config")
    train.add_argument("config", help="YAML config (see train/)")
    train.add_argument("overrides", nargs="*", metavar="section.key=value", help="e.g. train.steps=200")
    train.set_defaults(run=_train)
    ab = commands.add_parser("ablation", help="train and evaluate the paper's Table 1 settings from one 2D checkpoint")
    ab.add_argument("--shift", action="store_true", help="the domain-shift benchmark: source 2D model and labels, "
                    "target multi-view images and test split; writes ablation_shift.{json,md}")  # fmt: skip
    ab.add_argument("--config", help="the weak-stage config every setting starts from (default "
                    "train/synthetic_weak.yaml, with --shift train/synthetic_shift_weak.yaml)")  # fmt: skip
    ab.add_argument("--settings", nargs="+", metavar="NAME",
                    help=f"default: all of {' '.join(_ablation_settings(False))}; with --shift all of "
                    f"{' '.join(_ablation_settings(True))}")  # fmt: skip
    ab.add_argument("--oracle", help="--shift: the 2D oracle's checkpoint (default "
                    "train/checkpoints/synthetic_target_oracle2d.pt, `make target-oracle2d`)")  # fmt: skip
    ab.add_argument("--seeds", type=int, help="seeds per trained setting (default: the setting's own; "
                    "WS-no2D-adapt and ST-1view run 2)")  # fmt: skip
    ab.add_argument("--reference", metavar="JSON", help="a committed ablation whose other rows to print beside "
                    "this run's, not retrained")  # fmt: skip
    ab.add_argument("--test", nargs="+", metavar="DIR", help="synthetic data sets whose test split to evaluate "
                    "on (default: the config's data.root)")  # fmt: skip
    ab.add_argument("--runs", default="runs/ablation", help="one run directory per setting under this")
    ab.add_argument("--out", default="train/results", help="where ablation.json and ablation.md go")
    ab.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to every setting")
    ab.set_defaults(run=_ablation)
    ev = commands.add_parser("eval", help="MPJPE, N-MPJPE, P-MPJPE, PCK, AUC and 2D error of a checkpoint")
    ev.add_argument("checkpoint")
    ev.add_argument("--data", required=True, help="directory written by `ws3d data synth`, or a record-set .npz "
                    "(`ws3d data records`)")  # fmt: skip
    ev.add_argument("--split", choices=["2d", "mv", "val", "test"], help="the split of a `ws3d data synth` directory "
                    "(default test); not for a record-set file")  # fmt: skip
    ev.add_argument("--json", action="store_true", help="print one JSON object (mm, fractions, px)")
    ev.add_argument("--device", default=device)
    ev.set_defaults(run=_eval)
    ex = commands.add_parser("export", help="a slim checkpoint to ship (weights, config, metrics, training data "
                             "digests, the revisions that trained it)")  # fmt: skip
    ex.add_argument("checkpoint")
    ex.add_argument("out")
    ex.add_argument("--data", required=True, help="synthetic data set whose split the metrics are measured on")
    ex.add_argument("--split", default="test", choices=["2d", "mv", "val", "test"])
    ex.set_defaults(run=_export)
    pr = commands.add_parser("predict", help="2D overlay and 3D plot for images of one person each")
    pr.add_argument("checkpoint")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--out", default="predictions", help="output directory (default ./predictions)")
    pr.add_argument("--focal", type=float, help="focal length in pixels of the input image (default: 1.2 x side)")
    pr.add_argument("--device", default=device)
    pr.set_defaults(run=_predict)
    bench = commands.add_parser(
        "bench", help="run the kernel benchmark sweep; other arguments go to benchmarks/sweep.py"
    )
    bench.set_defaults(run=_bench)
    return parser


def _ablation_settings(shift: bool) -> list[str]:
    from ws3d.ablation import settings_for

    return list(settings_for(shift))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.sweep_args = extra  # ws3d bench passes them on
    try:
        code = args.run(args)
    except InputError as error:  # the user's input, not a bug: one line (anything else keeps its traceback)
        print(f"ws3d: error: {error}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
