"""``vtfpar reembed``: recompute the stored tracks' appearance embeddings with the served (or a given) checkpoint.

The store keeps no frames of a track, only its thumbnail (its best crop, at most 256 px): each track is embedded
from that one picture, as an upload of it would be (``POST /tracks/similar/upload``: the picture as every frame of
the clip). That is weaker than the embedding made at capture, a mean over the track's clips of several frames, so
re-embedded tracks match less well; tracks stored without a thumbnail (``VTFPAR_STORE_THUMBNAILS=false``) are
skipped. The new embeddings replace the tracks' old ones under the checkpoint's model, so that they are searched with
the tracks that model stores; the tracks keep their attributes and their own model.

The checkpoint is what ``vtfpar serve`` takes (``VTFPAR_CHECKPOINT``, or ``--checkpoint``): a ``.safetensors``
checkpoint or its ONNX export (exports give the embedding as a second output).

Batched (``--batch-size`` thumbnails a forward pass, one transaction each), newest tracks first, with progress on
stderr; resumable: a track whose embedding is already this model's, at its width, is skipped, so a run that stopped
continues where it ended. Run it while the service is stopped (or restart the service afterwards): the index files
of the models it changed are deleted, and the next start rebuilds them from the table.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from model import CheckpointError
from model.preprocess import sample_frame_indices

from .__main__ import BAD_SETTINGS, settings_or_exit
from .inference import load_runner
from .runner import Runner, StartupError
from .settings import Settings
from .store import ModelSpec, TrackEmbeddings, TrackStore
from .store.database import store_url
from .store.embeddings import EmbeddingRow
from .store.tables import TrackRow


@dataclass
class Progress:
    total: int
    done: int = 0
    skipped: int = 0  # thumbnail file missing or unreadable

    def line(self) -> str:
        return f"re-embedded {self.done:,} of {self.total:,} tracks ({self.skipped:,} skipped: thumbnail unreadable)"


def pending(model_id: int, width: int):
    """The tracks with a thumbnail whose embedding is not yet ``model_id``'s at ``width``."""
    done = select(EmbeddingRow.track_id).where(
        EmbeddingRow.model_id == model_id, func.length(EmbeddingRow.vector) == 4 * width
    )
    return select(TrackRow.id, TrackRow.camera, TrackRow.first_seen, TrackRow.last_seen, TrackRow.thumbnail).where(
        TrackRow.thumbnail.is_not(None), TrackRow.id.not_in(done)
    )


def picture(store: TrackStore, name: str) -> np.ndarray | None:
    data = store.thumbnails.read(name)
    if data is None:
        return None
    try:
        return np.asarray(Image.open(io.BytesIO(data), formats=["JPEG"]).convert("RGB"))
    except (OSError, ValueError):
        return None


def embedding_width(runner: Runner) -> int:
    """How wide the runner's embeddings are (one blank clip through it); an error where it gives none."""
    size, frames = runner.description.image_size, runner.description.frames_per_clip
    embedded = runner.predict_embedded([runner.prepare([np.zeros((size, size, 3), np.uint8)] * frames)])[1]
    if embedded is None:
        raise StartupError(
            f"{runner.served.checkpoint} gives no appearance embedding (an ONNX export made before exports carried "
            "one): export it again with vtfpar export"
        )
    return embedded.shape[1]


def reembed(store: TrackStore, runner: Runner, batch_size: int, data_dir: Path) -> Progress:
    """Re-embeds every pending track (see the module's docstring), a batch per transaction."""
    model_id = store.model_id(ModelSpec.of(runner.description))
    width = embedding_width(runner)
    with store.engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(pending(model_id, width).subquery())).scalar_one()
    progress = Progress(total)
    indexes = TrackEmbeddings(store.engine, data_dir / "embeddings")  # only for its files' names: nothing loaded
    below = None  # keyset: the next batch's ids are below the last one's
    repeats = sample_frame_indices(1, runner.description.frames_per_clip)
    while True:
        query = pending(model_id, width).order_by(TrackRow.id.desc()).limit(batch_size)
        with store.engine.connect() as connection:
            rows = connection.execute(query if below is None else query.where(TrackRow.id < below)).all()
        if not rows:
            break
        below = rows[-1].id
        pictures = [(row, picture(store, row.thumbnail)) for row in rows]
        readable = [(row, image) for row, image in pictures if image is not None]
        progress.skipped += len(rows) - len(readable)
        if readable:
            embeddings = runner.predict_embedded([runner.prepare([image for _ in repeats]) for _, image in readable])[1]
            assert embeddings is not None  # checked by embedding_width
            replaced = write(store, model_id, [row for row, _ in readable], embeddings)
            for stale in {model_id, *replaced}:  # their index files: rebuilt from the table at the next start
                indexes.path(stale).unlink(missing_ok=True)
            progress.done += len(readable)
        print(progress.line(), file=sys.stderr, flush=True)
    return progress


def write(store: TrackStore, model_id: int, rows: list, embeddings: np.ndarray) -> set[int]:
    """Replaces the rows' embeddings by ``embeddings`` under ``model_id``; returns the models whose rows it replaced."""
    ids = [row.id for row in rows]
    new = [
        {
            "track_id": row.id,
            "model_id": model_id,
            "camera": row.camera,
            "first_seen": row.first_seen,
            "last_seen": row.last_seen,
            "vector": np.asarray(vector, np.float32).tobytes(),
        }
        for row, vector in zip(rows, embeddings, strict=True)
    ]
    with store.engine.begin() as connection:
        replaced = connection.execute(select(EmbeddingRow.model_id).where(EmbeddingRow.track_id.in_(ids))).scalars()
        models = set(replaced)
        connection.execute(delete(EmbeddingRow).where(EmbeddingRow.track_id.in_(ids)))
        connection.execute(insert(EmbeddingRow), new)
    return models


def open_existing_store(settings: Settings) -> TrackStore:
    """The track store the service keeps; a missing data dir or SQLite file is an error, not a new empty store."""
    if not settings.data_dir.is_dir():
        raise StartupError(f"VTFPAR_DATA_DIR={settings.data_dir} is not a folder: no track store there")
    if settings.database_url is None and not (settings.data_dir / "tracks.db").is_file():
        raise StartupError(f"no track store in {settings.data_dir} ({store_url(None, settings.data_dir)} is missing)")
    return TrackStore.open(settings.database_url, settings.data_dir, settings.store_thumbnails, workers=1)


def failed(exc: Exception) -> int:
    print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
    return BAD_SETTINGS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar reembed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", help="the checkpoint to embed with (default: VTFPAR_CHECKPOINT, the served one)"
    )
    parser.add_argument("--data-dir", help="the service's data dir (default: VTFPAR_DATA_DIR)")
    parser.add_argument("--database-url", help="the service's database (default: VTFPAR_DATABASE_URL)")
    parser.add_argument("--device", help="auto, cuda or cpu (default: VTFPAR_DEVICE)")
    parser.add_argument("--batch-size", type=int, default=64, help="thumbnails per forward pass and transaction")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    given = {
        key: value for key in ("checkpoint", "data_dir", "database_url", "device") if (value := getattr(args, key))
    }
    settings = settings_or_exit({**given, "compile": "off"})  # one pass over the store: compiling would not pay
    try:
        store = open_existing_store(settings)
    except (StartupError, OSError, SQLAlchemyError) as exc:
        return failed(exc)
    try:
        runner = load_runner(settings)
        progress = reembed(store, runner, args.batch_size, settings.data_dir)
    except (StartupError, CheckpointError, OSError) as exc:
        return failed(exc)
    finally:
        store.close()
    print(progress.line() + f", under {runner.served.name} {runner.served.version}")
    return 0
