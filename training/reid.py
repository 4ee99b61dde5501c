"""Re-identification quality of a checkpoint's appearance embedding, MARS style, against simple baselines.

Every tracklet of the split is a query; its gallery is every tracklet seen by another camera (a tracklet's camera is
the ``C<n>`` of its MARS name, ``0001C1T0002``); a query whose identity no other camera saw is skipped. Rank-1 is the
share of queries whose most similar gallery tracklet is the same identity; mAP the mean average precision of the
ranked gallery. Similarity is cosine. The rows compared:

- ``embedding``: the network's appearance embedding (``VTFPAR.forward_with_embedding``), what the service stores;
- ``attribute logits``: the vector of the calibrated attribute logits, what a nearest neighbour over the stored
  answers would use;
- ``colour histogram``: 16 bins per RGB channel of the clip's frames as the model sees them;
- ``chance``: a random ranking (the mean of 10 seeds).

``vtfpar evaluate --reid`` runs it (on MARS, or on ``vtfpar synthetic``'s tracklets, where an identity keeps its look
over 1-3 tracklets in random cameras).
"""

from __future__ import annotations

import re

import numpy as np
import torch

from model import VTFPAR
from model.precision import autocast, resolve_precision

from .data.dataset import ClipDataset
from .data.records import DatasetError, Tracklet

CAMERA = re.compile(r"C(\d+)T")
HISTOGRAM_BINS = 16
CHANCE_SEEDS = 10


def camera_of(tracklet: Tracklet) -> str:
    found = CAMERA.search(tracklet.name)
    if found is None:
        raise DatasetError(f"tracklet {tracklet.name!r}: no camera in its name (MARS names: 0001C1T0002)")
    return found.group(1)


def cross_camera_metrics(features: np.ndarray, identities: np.ndarray, cameras: np.ndarray) -> dict:
    """Rank-1 and mAP of cosine similarity, each tracklet a query against the other cameras' tracklets."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    hits, precisions = 0, []
    for query in range(len(unit)):
        gallery = cameras != cameras[query]
        relevant = identities[gallery] == identities[query]
        if not relevant.any():
            continue
        ranked = relevant[np.argsort(-similarity[query, gallery], kind="stable")]
        hits += int(ranked[0])
        ranks = np.flatnonzero(ranked) + 1
        precisions.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
    if not precisions:
        raise DatasetError("no identity was seen by two cameras: nothing to re-identify")
    return {"rank1": hits / len(precisions), "mAP": float(np.mean(precisions)), "queries": len(precisions)}


def colour_histogram(clip: torch.Tensor) -> np.ndarray:
    """``clip [T, 3, S, S]`` (normalised) -> the square roots of its per-channel histograms (Hellinger's cosine)."""
    values = clip.permute(1, 0, 2, 3).flatten(1)
    low, high = float(values.min()), float(values.max())
    counts = np.concatenate([np.histogram(v.numpy(), HISTOGRAM_BINS, (low, high))[0] for v in values]).astype(float)
    return np.sqrt(counts / counts.sum())


@torch.no_grad()
def features(model: VTFPAR, clips: ClipDataset, device: torch.device, batch_size: int, precision: str) -> dict:
    """The embeddings, calibrated logits and colour histograms of every tracklet, in order."""
    model.eval()
    precision = resolve_precision(precision, device)
    temperatures = torch.tensor(model.temperatures or [1.0] * len(model.schema))
    embeddings, logits, histograms = [], [], []
    for start in range(0, len(clips), batch_size):
        batch = [clips[(0, index)][0] for index in range(start, min(start + batch_size, len(clips)))]
        histograms += [colour_histogram(clip) for clip in batch]
        with autocast(device, precision):
            logit, embedding = model.forward_with_embedding(torch.stack(batch).to(device))
        embeddings.append(embedding.float().cpu())
        logits.append(logit.float().cpu() / temperatures)
    return {
        "embedding": torch.cat(embeddings).numpy(),
        "attribute logits": torch.cat(logits).numpy(),
        "colour histogram": np.stack(histograms),
    }


def reid_report(
    model: VTFPAR, tracklets: list[Tracklet], device: torch.device, *, batch_size: int = 32, precision: str = "auto"
) -> dict:
    """Rank-1 and mAP per row (see the module's docstring), with how many queries and identities counted."""
    clips = ClipDataset(tracklets, model.preprocess, model.config.frames, "segment_middle")
    identities = np.array([t.identity for t in tracklets])
    cameras = np.array([camera_of(t) for t in tracklets])
    rows = {
        name: cross_camera_metrics(values, identities, cameras)
        for name, values in features(model, clips, device, batch_size, precision).items()
    }
    chance = [
        cross_camera_metrics(np.random.default_rng(seed).standard_normal((len(tracklets), 64)), identities, cameras)
        for seed in range(CHANCE_SEEDS)
    ]
    rows["chance"] = {key: float(np.mean([c[key] for c in chance])) for key in ("rank1", "mAP", "queries")}
    return {"tracklets": len(tracklets), "identities": len(set(identities.tolist())), "rows": rows}


def format_report(report: dict) -> str:
    lines = [
        f"re-identification, query and gallery from different cameras: {report['tracklets']} tracklets, "
        f"{report['identities']} identities, {report['rows']['embedding']['queries']} queries",
        f"{'':<18} {'rank-1':>7} {'mAP':>7}",
    ]
    lines += [f"{name:<18} {row['rank1']:>7.3f} {row['mAP']:>7.3f}" for name, row in report["rows"].items()]
    return "\n".join(lines)
