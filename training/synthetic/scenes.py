"""Synthetic camera scenes: several walkers crossing a background, with their ground-truth tracks and labels.

``vtfpar scenes --out DIR --scenes N --walkers K --frames F --seed S`` writes::

    DIR/scene-0001/scene.mp4    the video (H.264)
    DIR/scene-0001/gt.txt       the walkers' boxes, MOT Challenge ground truth:
                                frame,id,left,top,width,height,1,1,visibility (frames and ids from 1)
    DIR/scene-0001/labels.csv   each walker's labels: track_id, then one 0/1 column per ``mars`` attribute
    DIR/scenes.json             the generator's settings

for end-to-end tests of /predict/tracks (and pictures of what it answers). Walkers are the synthetic
pedestrians of ``training.render``, with labels drawn as ``training.synthetic`` draws them: each has a look, a
pose and a motion, and lives for part of the video. It walks, runs or rides across the scene at its own depth
(nearer walkers are lower and larger, and hide the ones behind them), so walkers enter and leave the picture
and occlude each other. A box is in the ground truth while at least half of its width is inside the frame.

Boxes are framed as the training crops are (``render_tracklet``): 2:1, sized by the depth an adult would have
there, feet near the bottom, with a detector's few pixels of jitter; so a child's box is as tall as an adult's
at the same depth, and the age cue the model learnt (body height within the crop) survives. ``walker_tracklet``
renders the same walker, in the same states, as an ordinary training tracklet, for comparisons. Deterministic
for a seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import load_schema

from ..data.mars import encode_labels
from .render import (
    MOTION_DRIFT,
    WALKING,
    BodyState,
    Canvas,
    Look,
    draw_person,
    make_background,
    make_look,
    plan_motion,
    render_tracklet,
)
from .tracklets import PRIORS, sample_identity_labels, sample_tracklet_labels, write_video

# Adult height as a fraction of the frame height, from the farthest depth (highest feet) to the nearest.
FAR_HEIGHT, NEAR_HEIGHT = 0.34, 0.6
FEET_RANGE = (0.74, 0.97)  # where the feet may be, as a fraction of the frame height
ADULT_IN_BOX = 0.84  # adult height / box height, as in render_tracklet's crops
FEET_IN_BOX = 0.965  # feet position / box height
# Walking speed in adult heights per frame (about 1.4 m/s at 25 fps); running and riding are as much faster as
# plan_motion's drift says (1.8x, 2x).
WALKING_SPEED = 0.03
BOX_JITTER = 0.02  # of the box height: a detector's wobble
MIN_INSIDE = 0.5  # share of a box's width inside the frame for it to be in the ground truth


@dataclass(frozen=True)
class Walker:
    track_id: int
    raw: dict[str, int]  # raw MARS values (training/data/mars.py), pose and motion included
    look: Look
    states: list[BodyState]  # one per frame of its life
    first_frame: int  # 0-based
    feet: float  # y of its feet, pixels
    adult_height: float  # pixels, at its depth
    x_origin: float  # centre x when plan_motion's centre is 0
    x_span: float  # pixels covered as plan_motion's centre goes from 0 to 1

    @property
    def frames(self) -> range:
        return range(self.first_frame, self.first_frame + len(self.states))

    def centre_x(self, frame: int) -> float:
        return self.x_origin + self.states[frame - self.first_frame].centre * self.x_span


@dataclass(frozen=True)
class GroundTruthBox:
    frame: int  # 0-based
    track_id: int
    left: float
    top: float
    width: float
    height: float
    visibility: float  # share of the box not hidden by nearer walkers


@dataclass
class Scene:
    frames: list[np.ndarray]  # RGB uint8 [H, W, 3]
    walkers: list[Walker]
    boxes: list[GroundTruthBox]  # by frame, then track id

    def track(self, track_id: int) -> list[GroundTruthBox]:
        return [box for box in self.boxes if box.track_id == track_id]


def plan_walkers(
    count: int, num_frames: int, size: tuple[int, int], rng: np.random.Generator, priors: str = "mars"
) -> list[Walker]:
    """Who crosses the scene, when, where and how. Lives last half the video or more; a walker there from the
    first frame starts anywhere, a later one walks in from the edge behind it (one that stands still is there
    from the start)."""
    height, width = size
    walkers = []
    for track_id in range(1, count + 1):
        raw = {**sample_identity_labels(rng, priors), **sample_tracklet_labels(rng, priors)}
        look = make_look(raw, rng)
        life = int(rng.integers(max(1, num_frames // 2), num_frames + 1))
        states = plan_motion(raw["pose"], raw["motion"], life, rng)
        direction = np.sign(states[-1].centre - states[0].centre)
        first = int(rng.integers(0, num_frames - life + 1)) if direction else 0
        feet = height * rng.uniform(*FEET_RANGE)
        depth = (feet / height - FEET_RANGE[0]) / (FEET_RANGE[1] - FEET_RANGE[0])
        adult_height = height * (FAR_HEIGHT + depth * (NEAR_HEIGHT - FAR_HEIGHT))
        # plan_motion's centre moves MOTION_DRIFT per life for each motion; scale it to WALKING_SPEED.
        span = WALKING_SPEED / MOTION_DRIFT[WALKING] * adult_height * max(life - 1, 1)
        half_box = adult_height / ADULT_IN_BOX / 4
        if first > 0:
            start = -half_box if direction > 0 else width + half_box
        else:
            start = width * rng.uniform(0.1, 0.9)
        x_origin = start - states[0].centre * span
        walkers.append(
            Walker(track_id, raw, look, states, first, float(feet), float(adult_height), float(x_origin), float(span))
        )
    return walkers


def render_scene(walkers: list[Walker], num_frames: int, size: tuple[int, int], rng: np.random.Generator) -> Scene:
    height, width = size
    background = make_background(height, width, rng)
    gain, noise = rng.uniform(0.92, 1.08), rng.uniform(1.5, 4.0)
    far_to_near = sorted(walkers, key=lambda walker: walker.feet)
    frames, boxes = [], []
    for frame in range(num_frames):
        canvas = Canvas(background.copy())
        present = [walker for walker in far_to_near if frame in walker.frames]
        for walker in present:
            state = walker.states[frame - walker.first_frame]
            draw_person(canvas, walker.look, state, walker.feet, walker.centre_x(frame), walker.adult_height)
        boxes += _boxes_in_view(frame, present, size, rng)
        image = canvas.image * gain + rng.normal(0.0, noise, size=canvas.image.shape)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return Scene(frames, walkers, sorted(boxes, key=lambda box: (box.frame, box.track_id)))


def _boxes_in_view(
    frame: int, far_to_near: list[Walker], size: tuple[int, int], rng: np.random.Generator
) -> list[GroundTruthBox]:
    """Each walker's box in this frame, with the share of it no nearer walker hides; only boxes mostly inside."""
    height, width = size
    placed = []
    for walker in far_to_near:
        box_height = walker.adult_height / ADULT_IN_BOX
        jitter = rng.uniform(-BOX_JITTER, BOX_JITTER, size=2) * box_height
        left = walker.centre_x(frame) - box_height / 4 + jitter[0]
        top = walker.feet - FEET_IN_BOX * box_height + jitter[1]
        placed.append((walker, left, top, box_height / 2, box_height))
    covered = np.zeros((height, width), dtype=bool)  # by walkers nearer than the one being measured
    found = []
    for walker, left, top, box_width, box_height in reversed(placed):  # nearest first
        if min(left + box_width, width) - max(left, 0) < MIN_INSIDE * box_width:
            continue
        x0, x1 = max(0, int(left)), min(width, int(left + box_width))
        y0, y1 = max(0, int(top)), min(height, int(top + box_height))
        visibility = 1.0 - covered[y0:y1, x0:x1].mean()
        covered[y0:y1, x0:x1] = True
        found.append(GroundTruthBox(frame, walker.track_id, left, top, box_width, box_height, float(visibility)))
    return found


def make_scene(
    seed: int, walkers: int = 5, num_frames: int = 48, size: tuple[int, int] = (128, 224), priors: str = "mars"
) -> Scene:
    rng = np.random.default_rng([seed, 3])
    return render_scene(plan_walkers(walkers, num_frames, size, rng, priors), num_frames, size, rng)


def walker_tracklet(scene: Scene, track_id: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """The walker as an ordinary synthetic tracklet (``render_tracklet``, ``size`` crops): the same look, in the
    states of the frames where the scene's ground truth has its box."""
    walker = next(walker for walker in scene.walkers if walker.track_id == track_id)
    states = [walker.states[box.frame - walker.first_frame] for box in scene.track(track_id)]
    return render_tracklet(walker.look, states, size[0], size[1], np.random.default_rng([seed, 4, track_id]))


def write_mot(boxes: list[GroundTruthBox], path: Path) -> None:
    with open(path, "w") as handle:
        for box in boxes:
            handle.write(
                f"{box.frame + 1},{box.track_id},{box.left:.2f},{box.top:.2f},{box.width:.2f},{box.height:.2f},"
                f"1,1,{box.visibility:.3f}\n"
            )


def write_labels(walkers: list[Walker], path: Path) -> None:
    schema = load_schema("mars")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["track_id", *schema.names])
        for walker in walkers:
            writer.writerow([walker.track_id, *encode_labels(walker.raw, schema).tolist()])


def write_scene(scene: Scene, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_video(scene.frames, folder / "scene.mp4", "mp4")
    write_mot(scene.boxes, folder / "gt.txt")
    in_view = {box.track_id for box in scene.boxes}
    write_labels([walker for walker in scene.walkers if walker.track_id in in_view], folder / "labels.csv")
    return folder


def generate_scenes(
    out: str | Path,
    *,
    scenes: int,
    seed: int = 0,
    walkers: int = 5,
    num_frames: int = 48,
    size: tuple[int, int] = (128, 224),
    priors: str = "mars",
) -> list[Path]:
    """Write ``scenes`` scenes under ``out`` (see the module docstring); returns their folders."""
    if priors not in PRIORS:
        raise ValueError(f"unknown priors {priors!r}; expected one of {PRIORS}")
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"frame size {size} must be even (video encoders need it)")
    if scenes < 1 or walkers < 1 or num_frames < 2:
        raise ValueError("need at least one scene, one walker and two frames")
    out = Path(out)
    folders = [
        write_scene(make_scene(seed + number, walkers, num_frames, size, priors), out / f"scene-{number + 1:04d}")
        for number in range(scenes)
    ]
    settings = {
        "generator": "training.scenes",
        "scenes": scenes,
        "seed": seed,
        "walkers": walkers,
        "frames": num_frames,
        "size": list(size),
        "priors": priors,
    }
    (out / "scenes.json").write_text(json.dumps(settings, indent=1) + "\n")
    return folders


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 128x224, got {text!r}") from None
    return height, width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar scenes", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (created; existing scenes are overwritten)")
    parser.add_argument("--scenes", type=int, default=1)
    parser.add_argument("--walkers", type=int, default=5, help="walkers per scene")
    parser.add_argument("--frames", type=int, default=48, help="frames per scene (25 fps)")
    parser.add_argument("--size", type=_size, default=(128, 224), metavar="HxW", help="frame size (default 128x224)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--priors", choices=PRIORS, default="mars", help="attribute frequencies (training.synthetic)")
    args = parser.parse_args(argv)
    try:
        folders = generate_scenes(
            args.out,
            scenes=args.scenes,
            seed=args.seed,
            walkers=args.walkers,
            num_frames=args.frames,
            size=args.size,
            priors=args.priors,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {len(folders)} scene(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
