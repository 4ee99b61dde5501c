"""``python -m training.train`` / ``vtfpar train``: train VTFPAR++ and write checkpoints in ``model/``'s format.

Defaults follow the paper's code (docs/method.md §2): Adam, lr 1e-3 with a 5-epoch linear warm-up from 1 % and a
cosine decay to 0.2 % over 30 epochs (set per epoch), batch 16 clips, the weighted BCE of §2.1, Resize/Pad/
RandomCrop/HFlip per frame. Frames are sampled in temporal order by default (``--sampling random_subset`` is the
reference's unordered sampling).

Unlike the paper's code, which picks the best epoch on the test split, ``--val-fraction`` (default 0.1) of the
training identities are held out as a validation split (training/validation.py): it picks the best epoch, and at
the end ``best.safetensors`` is calibrated on it (per-attribute thresholds, optionally temperatures; see
``vtfpar calibrate``) and scored once on the test split, for reporting only. ``--select-on test`` keeps the
authors' behaviour (the test split picks the best epoch); ``--val-fraction 0 --select-on test`` is exactly it.

Output folder: ``last.safetensors`` and ``best.safetensors`` (model checkpoints, written atomically),
``log.jsonl`` (one JSON line per epoch: losses, learning rate, all metrics of the selection split) and
``resume.safetensors`` (what ``--resume`` continues from). Multi-GPU / multi-node: launch with ``torchrun``;
``--batch-size`` is per process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model import (
    BackboneError,
    ConfigError,
    SchemaError,
    create_model,
    get_config,
    list_presets,
    load_checkpoint,
    save_checkpoint,
)

from .calibrate import calibrate, describe
from .calibration import OBJECTIVES
from .data.augment import Augment
from .data.dataset import ClipDataset, EpochBatches
from .data.records import DatasetError
from .data.sources import DATA_FORMATS, load_dataset
from .distributed import Context, DeviceError, all_reduce_sum, barrier, setup, teardown
from .engine import PRECISIONS, autocast, make_loader, predict
from .loss import WeightedBCELoss, positive_ratios
from .metrics import headline, score_logits
from .resume import STATE_FILE, Progress, ResumeError, load_state, restore, rng_states, save_state
from .schedule import WarmupCosine
from .validation import ValidationSplit, split_validation

SELECT_METRICS = ("protocol_f1", "protocol_accuracy", "mA", "instance_f1")
SELECT_ON = ("validation", "test")
USER_ERRORS = (DatasetError, ConfigError, SchemaError, BackboneError, ResumeError, DeviceError)
LOG_FILE = "log.jsonl"
BEST, LAST = "best.safetensors", "last.safetensors"
# Run arguments a resumed run must share with the original one for "continue exactly" to mean anything.
SETTINGS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_epochs",
    "warmup_lr_ratio",
    "min_lr_ratio",
    "seed",
    "val_fraction",
    "select_on",
    "select_metric",
    "sampling",
    "eval_sampling",
    "no_augment",
    "aug_pad",
    "aug_flip",
    "aug_per_clip",
    "precision",
)


def parse_override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vtfpar train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", required=True, help="dataset folder (MARS layout or VTFPAR++ package) or manifest")
    data.add_argument("--data-format", choices=DATA_FORMATS, default="auto")
    data.add_argument("--schema", help="attribute schema of a manifest (name or JSON path; default mars)")
    data.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the training identities held out to pick the best epoch and calibrate (0: none)",
    )
    model = p.add_argument_group("model")
    model.add_argument("--preset", default="vtfpar-b16", help=f"one of {list_presets()} or a preset JSON path")
    model.add_argument(
        "--set",
        dest="overrides",
        type=parse_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field (JSON value), e.g. --set side_width=64",
    )
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=30)
    opt.add_argument("--batch-size", type=int, default=16, help="clips per step and process")
    opt.add_argument("--lr", type=float, default=1e-3)
    opt.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay (the paper uses none)")
    opt.add_argument("--warmup-epochs", type=int, default=5)
    opt.add_argument("--warmup-lr-ratio", type=float, default=0.01, help="warm-up starts at this fraction of --lr")
    opt.add_argument("--min-lr-ratio", type=float, default=0.002, help="cosine floor as a fraction of --lr")
    opt.add_argument("--seed", type=int, default=12240321)
    aug = p.add_argument_group("frames and augmentation")
    aug.add_argument(
        "--sampling",
        choices=("segment_random", "random_subset"),
        default="segment_random",
        help="training frame sampling: ordered random frame per segment, or the reference's random unordered subset",
    )
    aug.add_argument("--eval-sampling", choices=("segment_middle", "random_subset"), default="segment_middle")
    aug.add_argument("--no-augment", action="store_true", help="no pad/crop/flip")
    aug.add_argument(
        "--aug-pad",
        type=int,
        help="pad before the random crop, in input pixels (default: 10 at 224, scaled to the input size)",
    )
    aug.add_argument("--aug-flip", type=float, default=0.5, help="horizontal flip probability")
    aug.add_argument("--aug-per-clip", action="store_true", help="one crop/flip per clip instead of per frame")
    run = p.add_argument_group("run")
    run.add_argument("--out", required=True, help="run folder for checkpoints, log and resume state")
    run.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto = bf16 autocast on CUDA")
    run.add_argument("--workers", type=int, help="DataLoader workers per process (default 4 on CUDA, 0 on CPU)")
    run.add_argument("--threads", type=int, help="torch CPU threads per process")
    run.add_argument("--eval-batch-size", type=int, help="default: 2 x --batch-size")
    run.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    run.add_argument(
        "--select-on",
        choices=SELECT_ON,
        default="validation",
        help="split that picks best.safetensors; test is the authors' behaviour (scores then chosen on test data)",
    )
    run.add_argument(
        "--select-metric", choices=SELECT_METRICS, default="protocol_f1", help="metric that picks best.safetensors"
    )
    run.add_argument(
        "--save-every-steps",
        type=int,
        default=0,
        help="also save the resume state every N steps (default: at the end of each epoch)",
    )
    run.add_argument(
        "--max-steps", type=int, default=0, help="stop after N optimiser steps in all (state saved; --resume continues)"
    )
    calibration = p.add_argument_group("calibration of best.safetensors on the validation split, after training")
    calibration.add_argument(
        "--calibrate-objective",
        choices=(*OBJECTIVES, "none"),
        default="f1",
        help="what each attribute's threshold maximises; none keeps the default threshold",
    )
    calibration.add_argument("--calibrate-temperature", action="store_true", help="also fit per-attribute temperatures")
    return p


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for name in ("epochs", "batch_size", "eval_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.seed < 0 or args.lr <= 0 or args.warmup_epochs < 0:
        parser.error("--seed must be >= 0, --lr > 0 and --warmup-epochs >= 0")
    if args.batch_size < 2:
        parser.error("--batch-size must be >= 2: the model ends in a BatchNorm over the batch")
    if not 0 <= args.val_fraction < 1:
        parser.error("--val-fraction must be in [0, 1)")
    if args.select_on == "validation" and args.val_fraction == 0:
        parser.error("--select-on validation needs a validation split: --val-fraction > 0 (or --select-on test)")


@dataclass
class Run:
    """Everything built from the arguments before the first step."""

    args: argparse.Namespace
    ctx: Context
    out: Path
    model: torch.nn.Module
    train_set: ClipDataset
    validation_set: ClipDataset | None
    test_set: ClipDataset
    criterion: WeightedBCELoss
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    batches: EpochBatches
    split: ValidationSplit
    settings: dict
    data_description: str  # the dataset
    description: str  # the dataset, its splits and the validation split, for the log

    @property
    def core(self):
        """The model without its DDP wrapper."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    @property
    def selection_set(self) -> ClipDataset:
        if self.args.select_on == "test":
            return self.test_set
        assert self.validation_set is not None, "check_args: --select-on validation needs --val-fraction > 0"
        return self.validation_set

    @property
    def eval_batch_size(self) -> int:
        return self.args.eval_batch_size or 2 * self.args.batch_size


def build_run(args: argparse.Namespace, ctx: Context) -> Run:
    data = load_dataset(args.data, args.data_format, args.schema)
    if not data.train or not data.test:
        raise DatasetError(f"{data.summary()}: training needs tracklets in both splits")
    split = split_validation(data.train, args.val_fraction, args.seed)
    config = get_config(args.preset, **dict(args.overrides))
    torch.manual_seed(args.seed)  # the same random side nets (and random backbone, if any) on every process
    model = create_model(config, data.schema, device=ctx.device)
    torch.manual_seed(args.seed + 1 + ctx.rank)  # each process its own drop-path draws

    augment = (
        None
        if args.no_augment
        else Augment.for_image_size(config.image_size, args.aug_pad, args.aug_flip, args.aug_per_clip)
    )
    train_set = ClipDataset(split.train, model.preprocess, config.frames, args.sampling, augment, args.seed)
    validation_set = (
        ClipDataset(split.validation, model.preprocess, config.frames, args.eval_sampling, None, args.seed)
        if split.validation
        else None
    )
    test_set = ClipDataset(data.test, model.preprocess, config.frames, args.eval_sampling, None, args.seed)
    batches = EpochBatches(len(train_set), args.batch_size, args.seed, ctx.rank, ctx.world_size)
    if batches.steps_per_epoch == 0:
        raise DatasetError(
            f"{data.summary()}: fewer training tracklets than one batch of "
            f"{args.batch_size} x {ctx.world_size} processes"
        )
    criterion = WeightedBCELoss(positive_ratios(train_set.labels())).to(ctx.device)
    schedule = WarmupCosine.from_ratios(
        args.lr, args.epochs, args.warmup_epochs, args.warmup_lr_ratio, args.min_lr_ratio
    )
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=schedule.lr(1), weight_decay=args.weight_decay)
    wrapped: torch.nn.Module = model
    if ctx.distributed:
        wrapped = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    settings = {
        "data": str(Path(args.data).resolve()),
        "config": config.to_dict(),
        "schema": data.schema.name,
        **{name: getattr(args, name) for name in SETTINGS},
        "world_size": ctx.world_size,
    }
    held_out = f"; {len(split.validation)} training tracklets held out for validation" if split.validation else ""
    return Run(
        args=args,
        ctx=ctx,
        out=Path(args.out),
        model=wrapped,
        train_set=train_set,
        validation_set=validation_set,
        test_set=test_set,
        criterion=criterion,
        optimizer=optimizer,
        schedule=schedule,
        batches=batches,
        split=split,
        settings=settings,
        data_description=data.description,
        description=data.summary() + held_out,
    )


def evaluate_epoch(run: Run) -> tuple[float, dict]:
    """Loss and metrics on the selection split."""
    logits, labels = predict(
        run.core,
        run.selection_set,
        run.ctx,
        batch_size=run.eval_batch_size,
        workers=run.args.workers,
        precision=run.args.precision,
    )
    device = run.ctx.device
    loss = float(run.criterion(torch.from_numpy(logits).to(device), torch.from_numpy(labels).float().to(device)))
    return loss, score_logits(logits, labels, run.core)


def checkpoint_provenance(run: Run, progress: Progress, epoch: int, scores: dict) -> dict:
    return {
        "trainer": "training.train",
        "epoch": epoch,
        "global_step": progress.global_step,
        "data": run.description,
        "selected_on": run.args.select_on,
        "selected_by": run.args.select_metric,
        "metrics": scores,
        "validation": run.split.record() if run.split.validation else None,
        "settings": run.settings,
    }


def write_checkpoints(run: Run, progress: Progress, epoch: int, metrics: dict) -> bool:
    """``last`` always, ``best`` when the selected metric improved; returns whether it did."""
    scores = headline(metrics)
    provenance = checkpoint_provenance(run, progress, epoch, scores)
    save_checkpoint(run.core, run.out / LAST, provenance=provenance)
    score = scores[run.args.select_metric]
    if progress.improves(score):
        progress.best_score, progress.best_epoch = score, epoch
        save_checkpoint(run.core, run.out / BEST, provenance=provenance)
        return True
    return False


def save_progress(run: Run, progress: Progress) -> None:
    # Collectives first: every process's RNG state, and the epoch's loss so far summed over processes.
    rngs = rng_states(run.ctx)
    loss_sum, loss_count = all_reduce_sum([progress.loss_sum, progress.loss_count], run.ctx)
    if run.ctx.is_main:
        saved = replace(progress, loss_sum=loss_sum, loss_count=int(loss_count))
        save_state(run.out / STATE_FILE, run.core, run.optimizer, saved, run.settings, rngs)
    barrier(run.ctx)


def start_or_resume(run: Run) -> Progress:
    state_path = run.out / STATE_FILE
    if not run.args.resume:
        if state_path.exists() or (run.out / LOG_FILE).exists():
            raise ResumeError(f"{run.out} already holds a run: pass --resume to continue it, or choose another --out")
        return Progress(world_size=run.ctx.world_size)
    if not state_path.exists():
        raise ResumeError(f"--resume: no resume state {state_path}")
    saved = load_state(state_path)
    changed = sorted(k for k in run.settings if k != "world_size" and saved.settings.get(k) != run.settings[k])
    if changed:
        raise ResumeError(f"--resume: the run in {run.out} was started with different settings: {changed}")
    restore(saved, run.core, run.optimizer, run.ctx)
    progress = saved.progress
    if progress.world_size != run.ctx.world_size and run.ctx.is_main:
        print(
            f"note: resuming with {run.ctx.world_size} processes instead of {progress.world_size}: data order "
            "and random draws differ from an uninterrupted run",
            file=sys.stderr,
        )
    if run.ctx.is_main and (run.out / LOG_FILE).exists():
        # Drop log lines of an epoch the killed run logged but did not finish saving.
        lines = (run.out / LOG_FILE).read_text().splitlines()
        kept = [line for line in lines if json.loads(line)["epoch"] < progress.epoch]
        (run.out / LOG_FILE).write_text("".join(line + "\n" for line in kept))
    progress.world_size = run.ctx.world_size
    if not run.ctx.is_main:  # the saved partial-epoch loss is the sum over processes: count it once
        progress.loss_sum, progress.loss_count = 0.0, 0
    return progress


def train_epoch(run: Run, progress: Progress) -> bool:
    """Train the rest of ``progress.epoch``; False when ``--max-steps`` stopped it (state saved)."""
    args, ctx = run.args, run.ctx
    batches = run.batches.batches(progress.epoch, progress.step)
    run.model.train()
    loader = make_loader(run.train_set, batches, args.workers, ctx.device)
    bar = tqdm(
        loader,
        total=len(batches),
        desc=f"epoch {progress.epoch}/{args.epochs}",
        leave=False,
        disable=not ctx.is_main or None,
    )
    for clips, labels, _ in bar:
        clips, labels = clips.to(ctx.device, non_blocking=True), labels.to(ctx.device, non_blocking=True)
        with autocast(ctx.device, args.precision):
            logits = run.model(clips)
        loss = run.criterion(logits.float(), labels)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        progress.add_step(loss.item(), len(labels))
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if args.max_steps and progress.global_step >= args.max_steps:
            save_progress(run, progress)
            if ctx.is_main:
                print(f"stopped after {progress.global_step} steps (--max-steps); --resume continues", flush=True)
            return False
        if args.save_every_steps and progress.global_step % args.save_every_steps == 0:
            save_progress(run, progress)
    return True


def log_epoch(run: Run, progress: Progress, lr: float, started: float) -> None:
    """Evaluate when due, write the checkpoints and the epoch's log line."""
    args, ctx, epoch = run.args, run.ctx, progress.epoch
    loss_sum, loss_count = all_reduce_sum([progress.loss_sum, progress.loss_count], ctx)
    record: dict[str, Any] = {
        "epoch": epoch,
        "lr": lr,
        "global_step": progress.global_step,
        "train_loss": loss_sum / max(loss_count, 1),
    }
    if epoch % args.eval_every == 0 or epoch == args.epochs:
        record["eval_split"] = args.select_on
        record["eval_loss"], metrics = evaluate_epoch(run)
        if ctx.is_main:
            record["best"] = write_checkpoints(run, progress, epoch, metrics)
            record.update(headline=headline(metrics), metrics=metrics)
    record["time_s"] = round(time.time() - started, 2)
    if ctx.is_main:
        with open(run.out / LOG_FILE, "a") as log:
            log.write(json.dumps(record) + "\n")
        shown = " ".join(f"{k} {v:.4f}" for k, v in record.get("headline", {}).items())
        evaluated = f"{args.select_on} loss {record['eval_loss']:.4f} " if "eval_loss" in record else ""
        print(f"epoch {epoch}: lr {lr:.2e} train_loss {record['train_loss']:.4f} {evaluated}{shown}", flush=True)


def finish(run: Run) -> dict:
    """Calibrate ``best`` on the validation split, then score it once on the test split (for reporting only);
    returns the test headlines. Every process predicts its shard; the main process writes."""
    args, ctx = run.args, run.ctx
    barrier(ctx)  # best.safetensors is complete
    loaded = load_checkpoint(run.out / BEST, device=ctx.device)
    model = loaded.model
    options = {"batch_size": run.eval_batch_size, "workers": args.workers, "precision": args.precision}
    if run.validation_set is not None and args.calibrate_objective != "none":
        logits, labels = predict(model, run.validation_set, ctx, **options)
        fit_on = {
            "data": run.data_description,
            "split": "validation",
            **run.split.record(),
            "sampling": args.eval_sampling,
            "checkpoint_sha256": loaded.digest,
        }
        record = calibrate(
            model,
            logits,
            labels,
            objective=args.calibrate_objective,
            temperature=args.calibrate_temperature,
            fit_on=fit_on,
        )
        if ctx.is_main:
            print(describe(record), flush=True)
    logits, labels = predict(model, run.test_set, ctx, **options)
    test_metrics: dict[str, dict] = {
        "default_threshold": headline(score_logits(logits, labels, model, calibrated=False))
    }
    if model.calibration:
        test_metrics["calibrated"] = headline(score_logits(logits, labels, model))
    if ctx.is_main:
        provenance = {**loaded.metadata["provenance"], "test_metrics": test_metrics}
        save_checkpoint(
            model, run.out / BEST, provenance=provenance, embed_backbone=loaded.metadata["backbone"]["embedded"]
        )
        for name, scores in test_metrics.items():
            shown = " ".join(f"{k} {v:.4f}" for k, v in scores.items())
            print(f"test split ({name.replace('_', ' ')}; reporting only): {shown}", flush=True)
    barrier(ctx)
    return test_metrics


def train(run: Run) -> Progress:
    args, ctx = run.args, run.ctx
    run.out.mkdir(parents=True, exist_ok=True)
    progress = start_or_resume(run)
    if ctx.is_main:
        print(
            f"{run.description}; {run.batches.steps_per_epoch} steps per epoch on {ctx.world_size} process(es), "
            f"device {ctx.device}",
            flush=True,
        )
    while progress.epoch <= args.epochs:
        started, lr = time.time(), run.schedule.lr(progress.epoch)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        if not train_epoch(run, progress):
            return progress
        log_epoch(run, progress, lr, started)
        progress.next_epoch()
        save_progress(run, progress)
    finish(run)
    if ctx.is_main:
        print(
            f"done: {args.epochs} epochs; best {args.select_on} {args.select_metric} {progress.best_score:.4f} at "
            f"epoch {progress.best_epoch} -> {run.out / BEST}",
            flush=True,
        )
    return progress


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        ctx = setup(args.device)
    except DeviceError as exc:
        parser.error(str(exc))
    if args.workers is None:
        args.workers = 4 if ctx.device.type == "cuda" else 0
    try:
        train(build_run(args, ctx))
    except USER_ERRORS as exc:
        parser.error(str(exc))
    finally:
        teardown(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
