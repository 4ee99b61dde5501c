"""Synthetic pedestrian tracklets in the MARS-Attribute layout, so the whole pipeline can learn on a laptop.

``vtfpar synthetic --out DIR --tracklets N --seed S`` writes::

    DIR/mars_attributes.csv          the later release's columns (with pose and motion): the 43-column schema
    DIR/bbox_train/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg   train identities
    DIR/bbox_test/<pid>/...          test identities (the split is by identity, as in MARS)
    DIR/synthetic.json               the generator's settings
    DIR/videos/<tracklet>.mp4|webm   with --videos: each tracklet as a clip, plus videos/manifest.csv
                                     (the generic manifest format, for the manifest reader and serving tests)

so ``--data DIR`` trains on it with the MARS reader. Identities share their appearance over 1-3 tracklets
(different cameras, poses and motions). Attribute frequencies follow the real MARS file's priors (docs/method.md
§3.3) by default; pose and motion priors are assumed (the later release's counts are not available here).
``--priors uniform`` draws every class equally often instead. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import numpy as np
from PIL import Image

from model import load_schema

from ..data.mars import HEADER, SPLIT_FOLDERS, encode_labels, frame_name, tracklet_name
from .render import make_look, plan_motion, render_tracklet

# Class counts of the published mars_attributes.csv (docs/method.md §3.3).
MARS_CLASS_COUNTS = {
    "Tops.c": (2861, 578, 1367, 1255, 1695, 4276, 1053, 1768, 1507),
    "Bottoms.c": (1087, 15, 6573, 265, 2599, 487, 113, 2904, 1510, 807),
    "Age": (104, 13161, 2837, 258),
    # Assumed: mostly frontal-to-back views in even shares, mostly walking.
    "pose": (24, 20, 18, 16, 17, 5),
    "motion": (72, 5, 4, 15, 4),
}
# P(raw value 1) of the binary kinds, out of 16,360 rows.
MARS_POSITIVE = {
    "Tops.l": 15334,
    "Bottoms.l": 9975,
    "shoulder bag": 4140,
    "backpack": 4093,
    "hat": 552,
    "handbag": 2540,
    "gender": 6771,
}
MARS_ROWS = 16360
# Hair and lower-body type depend on gender in real data; these conditionals keep the MARS marginals
# (long hair 34 %, skirt/dress 13.7 %).
LONG_HAIR_GIVEN_FEMALE = {True: 0.65, False: 0.12}
SKIRT_GIVEN_FEMALE = {True: 0.31, False: 0.015}
PRIORS = ("mars", "uniform")
VIDEO_CODECS = {"mp4": "libx264", "webm": "libvpx-vp9"}


def sample_identity_labels(rng: np.random.Generator, priors: str) -> dict[str, int]:
    """Raw per-kind values of one identity (everything but pose and motion)."""
    if priors == "uniform":
        raw = {
            kind: int(rng.integers(len(counts)))
            for kind, counts in MARS_CLASS_COUNTS.items()
            if kind not in ("pose", "motion")
        }
        raw.update({kind: int(rng.integers(2)) for kind in (*MARS_POSITIVE, "hair", "Bottoms.t")})
        return raw
    raw = {}
    for kind in ("Tops.c", "Bottoms.c", "Age"):
        counts = np.asarray(MARS_CLASS_COUNTS[kind], dtype=float)
        raw[kind] = int(rng.choice(len(counts), p=counts / counts.sum()))
    for kind, positives in MARS_POSITIVE.items():
        raw[kind] = int(rng.random() < positives / MARS_ROWS)
    female = raw["gender"] == 1
    raw["hair"] = int(rng.random() < LONG_HAIR_GIVEN_FEMALE[female])
    raw["Bottoms.t"] = int(not rng.random() < SKIRT_GIVEN_FEMALE[female])  # 0 = skirt/dress
    return raw


def sample_tracklet_labels(rng: np.random.Generator, priors: str) -> dict[str, int]:
    """Raw pose and motion of one tracklet."""
    raw = {}
    for kind in ("pose", "motion"):
        counts = np.asarray(MARS_CLASS_COUNTS[kind], dtype=float)
        if priors == "uniform":
            counts = np.ones_like(counts)
        raw[kind] = int(rng.choice(len(counts), p=counts / counts.sum()))
    return raw


@dataclass(frozen=True)
class TrackletJob:
    index: int
    pid: int
    camera: int
    number: int
    split: str
    raw: dict
    num_frames: int


def plan_dataset(
    tracklets: int, seed: int, priors: str, test_fraction: float, frames_range: tuple[int, int]
) -> list[TrackletJob]:
    """Identities, their tracklets and labels; the split is by identity."""
    rng = np.random.default_rng([seed, 0])
    jobs: list[TrackletJob] = []
    pid = 0
    while len(jobs) < tracklets:
        pid += 1
        identity = sample_identity_labels(rng, priors)
        split = "test" if rng.random() < test_fraction else "train"
        numbers: dict[int, int] = {}
        for _ in range(min(int(rng.integers(1, 4)), tracklets - len(jobs))):
            camera = int(rng.integers(1, 7))
            numbers[camera] = numbers.get(camera, 0) + 1
            jobs.append(
                TrackletJob(
                    index=len(jobs),
                    pid=pid,
                    camera=camera,
                    number=numbers[camera],
                    split=split,
                    raw={**identity, **sample_tracklet_labels(rng, priors)},
                    num_frames=int(rng.integers(frames_range[0], frames_range[1] + 1)),
                )
            )
    return jobs


def render_job(job: TrackletJob, seed: int, size: tuple[int, int]) -> list[np.ndarray]:
    # The look is seeded by identity and the rest by tracklet, so an identity looks the same in every tracklet.
    look = make_look(job.raw, np.random.default_rng([seed, 1, job.pid]))
    rng = np.random.default_rng([seed, 2, job.index])
    states = plan_motion(job.raw["pose"], job.raw["motion"], job.num_frames, rng)
    return render_tracklet(look, states, size[0], size[1], rng)


def write_video(frames: list[np.ndarray], path: Path, kind: str, fps: int = 25) -> None:
    with av.open(str(path), mode="w") as container:
        stream = cast(av.VideoStream, container.add_stream(VIDEO_CODECS[kind], rate=fps))  # a video codec's
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_job(args: tuple[TrackletJob, Path, int, tuple[int, int], str | None]) -> None:
    job, out, seed, size, videos = args
    frames = render_job(job, seed, size)
    folder = out / SPLIT_FOLDERS[job.split] / f"{job.pid:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    for number, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / frame_name(job.pid, job.camera, job.number, number), quality=92)
    if videos:
        write_video(frames, out / "videos" / f"{tracklet_name(job.pid, job.camera, job.number)}.{videos}", videos)


def generate(
    out: str | Path,
    *,
    tracklets: int,
    seed: int = 0,
    frames_per_tracklet: tuple[int, int] = (16, 16),
    size: tuple[int, int] = (128, 64),
    priors: str = "mars",
    test_fraction: float = 0.5,
    videos: str | None = None,
    workers: int = 1,
) -> Path:
    """Write a synthetic MARS-layout dataset to ``out`` (see the module docstring); returns ``out``."""
    out = Path(out)
    _check_settings(
        tracklets=tracklets,
        frames_per_tracklet=frames_per_tracklet,
        size=size,
        priors=priors,
        test_fraction=test_fraction,
        videos=videos,
    )
    jobs = plan_dataset(tracklets, seed, priors, test_fraction, frames_per_tracklet)
    out.mkdir(parents=True, exist_ok=True)
    for folder in SPLIT_FOLDERS.values():
        (out / folder).mkdir(exist_ok=True)
    if videos:
        (out / "videos").mkdir(exist_ok=True)
    tasks = [(job, out, seed, size, videos) for job in jobs]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_job, tasks, chunksize=8))
    else:
        for task in tasks:
            _write_job(task)

    _write_label_file(out / "mars_attributes.csv", jobs)
    if videos:
        _write_video_manifest(out / "videos" / "manifest.csv", jobs, videos)
    settings = {
        "generator": "training.synthetic",
        "tracklets": tracklets,
        "seed": seed,
        "frames_per_tracklet": list(frames_per_tracklet),
        "size": list(size),
        "priors": priors,
        "test_fraction": test_fraction,
        "videos": videos,
        "train_tracklets": sum(job.split == "train" for job in jobs),
        "test_tracklets": sum(job.split == "test" for job in jobs),
    }
    (out / "synthetic.json").write_text(json.dumps(settings, indent=1) + "\n")
    return out


def _check_settings(
    *,
    tracklets: int,
    frames_per_tracklet: tuple[int, int],
    size: tuple[int, int],
    priors: str,
    test_fraction: float,
    videos: str | None,
) -> None:
    if tracklets < 2:
        raise ValueError("need at least 2 tracklets")
    if priors not in PRIORS:
        raise ValueError(f"unknown priors {priors!r}; expected one of {PRIORS}")
    if videos is not None and videos not in VIDEO_CODECS:
        raise ValueError(f"unknown video container {videos!r}; expected one of {sorted(VIDEO_CODECS)}")
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"frame size {size} must be even (video encoders need it)")
    if not (0.0 < test_fraction < 1.0):
        raise ValueError("test fraction must be between 0 and 1")
    if frames_per_tracklet[0] < 1 or frames_per_tracklet[1] < frames_per_tracklet[0]:
        raise ValueError(f"invalid frames-per-tracklet range {frames_per_tracklet}")


def _write_label_file(path: Path, jobs: list[TrackletJob]) -> None:
    """The MARS label file: one row of raw per-kind values per tracklet."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for job in jobs:
            writer.writerow([job.pid, job.camera, job.number] + [job.raw[kind] for kind in HEADER[3:]])


def _write_video_manifest(path: Path, jobs: list[TrackletJob], videos: str) -> None:
    """The generic manifest of the clips: path, split and one 0/1 column per ``mars`` schema attribute."""
    schema = load_schema("mars")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "split", *schema.names])
        for job in jobs:
            name = tracklet_name(job.pid, job.camera, job.number)
            writer.writerow([f"{name}.{videos}", job.split, *encode_labels(job.raw, schema).tolist()])


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 128x64, got {text!r}") from None
    return height, width


def _frames_range(text: str) -> tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        return int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX such as 12-24, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar synthetic", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
    parser.add_argument("--tracklets", type=int, required=True, help="number of tracklets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--frames-per-tracklet",
        type=_frames_range,
        default=(16, 16),
        metavar="N|MIN-MAX",
        help="frames per tracklet (default 16)",
    )
    parser.add_argument(
        "--size",
        type=_size,
        default=(128, 64),
        metavar="HxW",
        help="frame size (default 128x64; MARS crops are 256x128)",
    )
    parser.add_argument(
        "--priors",
        choices=PRIORS,
        default="mars",
        help="attribute frequencies: MARS's real priors (default) or uniform classes",
    )
    parser.add_argument("--test-fraction", type=float, default=0.5, help="share of identities in bbox_test/")
    parser.add_argument("--videos", choices=sorted(VIDEO_CODECS), help="also write each tracklet as a clip")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    args = parser.parse_args(argv)
    try:
        out = generate(
            args.out,
            tracklets=args.tracklets,
            seed=args.seed,
            frames_per_tracklet=args.frames_per_tracklet,
            size=args.size,
            priors=args.priors,
            test_fraction=args.test_fraction,
            videos=args.videos,
            workers=args.workers,
        )
    except ValueError as exc:
        parser.error(str(exc))
    settings = json.loads((out / "synthetic.json").read_text())
    print(f"wrote {settings['train_tracklets']} train + {settings['test_tracklets']} test tracklets to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
