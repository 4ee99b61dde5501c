"""The validation split: identities held out of the training split to choose the best epoch and to calibrate.

A share (``fraction``) of the training split's identities, drawn with a generator seeded by the run's seed, so
the same data and seed always give the same split; every tracklet of a held-out identity goes to validation, so
no person is seen in training and scored in validation. The test split is never touched. The split is recorded
(counts, a digest of the tracklet names, and a digest of every identity of the training split) so that
calibrating later recognises the data the model trained on by its content, wherever it was copied or moved, and
checks it rebuilt the same split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.records import DatasetError, Tracklet

# Leading word of the split's seed sequence, apart from the clip and epoch-order streams of dataset.py.
VALIDATION_STREAM = 3


@dataclass(frozen=True)
class ValidationSplit:
    train: list[Tracklet]
    validation: list[Tracklet]
    fraction: float
    seed: int

    def record(self) -> dict:
        """What a checkpoint stores about the split it was selected and calibrated on."""
        names = "\n".join(sorted(t.name for t in self.validation))
        return {
            "fraction": self.fraction,
            "seed": self.seed,
            "identities": len({t.identity for t in self.validation}),
            "tracklets": len(self.validation),
            "tracklets_sha256": hashlib.sha256(names.encode()).hexdigest(),
            "identities_sha256": identities_digest(self.train + self.validation),
        }


def identities_digest(tracklets: list[Tracklet]) -> str:
    """sha256 of the sorted, distinct identities of ``tracklets``: the same for the same people, wherever the
    files lie."""
    return hashlib.sha256("\n".join(sorted({t.identity for t in tracklets})).encode()).hexdigest()


def split_validation(tracklets: list[Tracklet], fraction: float, seed: int) -> ValidationSplit:
    """Hold out ``round(fraction x identities)`` identities of ``tracklets`` (at least one when ``fraction`` > 0;
    ``fraction`` 1 holds out all of them, for calibrating a model that never saw this data)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"validation fraction {fraction} must be in [0, 1]")
    identities = sorted({t.identity for t in tracklets})
    count = min(len(identities), max(1, round(fraction * len(identities)))) if fraction > 0 else 0
    if 0 < fraction < 1 and count == len(identities):
        raise DatasetError(
            f"cannot hold out {fraction:g} of {len(identities)} training identit(y/ies) and keep some to train on"
        )
    order = np.random.default_rng([VALIDATION_STREAM, seed]).permutation(len(identities))
    held_out = {identities[i] for i in order[:count]}
    return ValidationSplit(
        train=[t for t in tracklets if t.identity not in held_out],
        validation=[t for t in tracklets if t.identity in held_out],
        fraction=fraction,
        seed=seed,
    )


def rebuild_split(
    provenance: dict,
    data: str | Path,
    tracklets: list[Tracklet],
    fraction: float | None = None,
    seed: int | None = None,
) -> ValidationSplit:
    """The validation split for a checkpoint with ``provenance``, from the training split ``tracklets`` of
    ``data``. On the data it was trained on (the same identities, by their digest, wherever the data lies now; or
    the same path, for checkpoints that record no digest): the split it recorded, rebuilt and checked against the
    record (no other split is allowed there: it would reuse tracklets the model trained on). On other data, or
    for a checkpoint that records no split: the split ``fraction`` and ``seed`` ask for."""
    recorded = provenance.get("validation")
    trained_on = (provenance.get("settings") or {}).get("data")
    same_identities = recorded is not None and recorded.get("identities_sha256") == identities_digest(tracklets)
    if recorded and (same_identities or trained_on == str(Path(data).resolve())):
        where = "these identities" if same_identities else str(data)
        if fraction is not None or seed is not None:
            raise DatasetError(
                f"the checkpoint was trained on {where} and records its validation split (fraction "
                f"{recorded['fraction']}, seed {recorded['seed']}); another split would reuse tracklets it trained on"
            )
        split = split_validation(tracklets, recorded["fraction"], recorded["seed"])
        if split.record()["tracklets_sha256"] != recorded["tracklets_sha256"]:
            raise DatasetError(
                f"the validation split rebuilt from {data} ({split.record()['tracklets']} tracklets) differs from "
                f"the one the checkpoint was trained with ({recorded['tracklets']} tracklets): has the data changed?"
            )
        return split
    if fraction is None:
        where = "records no validation split" if not recorded else f"was trained on other data ({trained_on})"
        raise DatasetError(
            f"the checkpoint {where}: pass --val-fraction (and --seed) to hold out identities of the training "
            f"split of {data}, which is only sound where the model never trained on them (e.g. --val-fraction 1 "
            "on data it has never seen)"
        )
    return split_validation(tracklets, fraction, seed or 0)
