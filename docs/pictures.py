"""Re-makes the documentation's picture of ``vtfpar annotate`` (README.md and docs/tracks.md) with the commands its
caption gives, and records a digest of what decides its content, so that a test can say when it is stale.

    python docs/pictures.py           # re-make docs/tracks-annotated.png and docs/pictures.json
    python docs/pictures.py --check   # exit 1, naming the picture, if its inputs or its file changed since

The inputs: the caption's commands, the demo model, the scene generator, the tracks pipeline and the drawing code.
A digest rather than a pixel comparison, because re-making the picture takes a model run and encoders may differ
by a few pixel values from one FFmpeg build to another.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RECORD = DOCS / "pictures.json"
PICTURE = "tracks-annotated.png"
FRAME = 19  # 0-based, as the caption says
# The caption's commands (docs/tracks.md), in a folder of their own: {out} is that folder.
SCENES = "scenes --out {out} --walkers 6 --frames 60 --size 360x640 --seed 2 --priors uniform"
ANNOTATE = "annotate {out}/scene-0001/scene.mp4 --tracks {out}/scene-0001/gt.txt --out {out}/a.mp4 --json {out}/a.jsonl"
INPUTS = ("app/assets/demo.safetensors", "app/annotate.py", "app/tracks", "training/synthetic", "docs/pictures.py")


def inputs_digest() -> str:
    digest = hashlib.sha256(f"{SCENES}\n{ANNOTATE}\n{FRAME}\n".encode())
    for name in INPUTS:
        path = REPO / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(REPO).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for command in (SCENES, ANNOTATE):
            args = command.format(out=folder).split()
            subprocess.run([sys.executable, "-m", "vtfpar", *args], check=True, cwd=REPO)
        with av.open(f"{folder}/a.mp4") as video:
            frame = next(frame for i, frame in enumerate(video.decode(video=0)) if i == FRAME)
        frame.to_image().save(DOCS / PICTURE, optimize=True)
    record = {PICTURE: {"inputs": inputs_digest(), "file": file_digest(DOCS / PICTURE)}}
    RECORD.write_text(json.dumps(record, indent=2) + "\n")


def stale() -> list[str]:
    """The pictures whose inputs or file differ from what was recorded when they were made."""
    record = json.loads(RECORD.read_text())
    entry = record.get(PICTURE, {})
    current = {"inputs": inputs_digest(), "file": file_digest(DOCS / PICTURE)}
    return [PICTURE] if entry != current else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say whether the pictures are stale")
    if not parser.parse_args().check:
        make()
    if names := stale():
        print(f"stale: {', '.join(names)}: run python docs/pictures.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
