"""``python -m training.train`` / ``vtfpar-train``: train VTFPAR++ and write checkpoints in ``model/``'s format.

Defaults follow the paper's code (docs/method.md §2): Adam, lr 1e-3 with a 5-epoch linear warm-up from 1 % and a
cosine decay to 0.2 % over 30 epochs (set per epoch), batch 16 clips, the weighted BCE of §2.1, Resize/Pad/
RandomCrop/HFlip per frame, evaluation on the test split after every epoch. Frames are sampled in temporal
order by default (``--sampling random_subset`` is the reference's unordered sampling).

Output folder: ``last.safetensors`` and ``best.safetensors`` (model checkpoints, written atomically),
``log.jsonl`` (one JSON line per epoch: losses, learning rate, all metrics) and ``resume.safetensors`` (what
``--resume`` continues from). Multi-GPU / multi-node: launch with ``torchrun``; ``--batch-size`` is per process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model import BackboneError, ConfigError, SchemaError, create_model, get_config, list_presets, save_checkpoint

from .augment import Augment
from .dataset import ClipDataset, EpochBatches
from .distributed import Context, DeviceError, all_reduce_sum, barrier, setup, teardown
from .engine import PRECISIONS, autocast, make_loader, predict
from .loss import WeightedBCELoss, positive_ratios
from .metrics import compute_metrics, headline
from .records import DatasetError
from .resume import STATE_FILE, ResumeError, load_state, restore, rng_states, save_state
from .schedule import WarmupCosine
from .sources import DATA_FORMATS, load_dataset

SELECT_METRICS = ("protocol_f1", "protocol_accuracy", "mA", "instance_f1")
USER_ERRORS = (DatasetError, ConfigError, SchemaError, BackboneError, ResumeError, DeviceError)
LOG_FILE = "log.jsonl"


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
        prog="vtfpar-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", required=True, help="dataset folder (MARS layout or VTFPAR++ package) or manifest")
    data.add_argument("--data-format", choices=DATA_FORMATS, default="auto")
    data.add_argument("--schema", help="attribute schema of a manifest (name or JSON path; default mars)")
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
        "--select-metric", choices=SELECT_METRICS, default="protocol_f1", help="test metric that picks best.safetensors"
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
    return p


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for name in ("epochs", "batch_size", "eval_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.seed < 0 or args.lr <= 0 or args.warmup_epochs < 0:
        parser.error("--seed must be >= 0, --lr > 0 and --warmup-epochs >= 0")
    if args.batch_size < 2:
        parser.error("--batch-size must be >= 2: the model ends in a BatchNorm over the batch")


@dataclass
class Run:
    """Everything built from the arguments before the first step."""

    args: argparse.Namespace
    ctx: Context
    out: Path
    model: torch.nn.Module
    train_set: ClipDataset
    test_set: ClipDataset
    criterion: WeightedBCELoss
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    batches: EpochBatches
    identity: dict
    description: str

    @property
    def core(self):
        """The model without its DDP wrapper."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model


def build_run(args: argparse.Namespace, ctx: Context) -> Run:
    data = load_dataset(args.data, args.data_format, args.schema)
    if not data.train or not data.test:
        raise DatasetError(f"{data.summary()}: training needs tracklets in both splits")
    config = get_config(args.preset, **dict(args.overrides))
    torch.manual_seed(args.seed)  # the same random side nets (and random backbone, if any) on every process
    model = create_model(config, data.schema, device=ctx.device)
    torch.manual_seed(args.seed + 1 + ctx.rank)  # each process its own drop-path draws

    augment = (
        None
        if args.no_augment
        else Augment.for_image_size(config.image_size, args.aug_pad, args.aug_flip, args.aug_per_clip)
    )
    train_set = ClipDataset(data.train, model.preprocess, config.frames, args.sampling, augment, args.seed)
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
    if ctx.distributed:
        model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    # What a resumed run must share with the original one for "continue exactly" to mean anything.
    identity = {
        "data": str(Path(args.data).resolve()),
        "config": config.to_dict(),
        "schema": data.schema.name,
        **{
            k: getattr(args, k)
            for k in (
                "epochs",
                "batch_size",
                "lr",
                "weight_decay",
                "warmup_epochs",
                "warmup_lr_ratio",
                "min_lr_ratio",
                "seed",
                "sampling",
                "eval_sampling",
                "no_augment",
                "aug_pad",
                "aug_flip",
                "aug_per_clip",
                "precision",
            )
        },
        "world_size": ctx.world_size,
    }
    return Run(
        args=args,
        ctx=ctx,
        out=Path(args.out),
        model=model,
        train_set=train_set,
        test_set=test_set,
        criterion=criterion,
        optimizer=optimizer,
        schedule=schedule,
        batches=batches,
        identity=identity,
        description=data.summary(),
    )


def evaluate_epoch(run: Run) -> tuple[float, dict]:
    args = run.args
    logits, labels = predict(
        run.core, run.test_set, run.ctx, args.eval_batch_size or 2 * args.batch_size, args.workers, args.precision
    )
    loss = float(
        run.criterion(torch.from_numpy(logits).to(run.ctx.device), torch.from_numpy(labels).float().to(run.ctx.device))
    )
    probs = 1 / (1 + np.exp(-logits))
    return loss, compute_metrics(probs, labels, run.core.schema, run.core.thresholds)


def write_checkpoints(run: Run, progress: dict, epoch: int, metrics: dict) -> bool:
    """``last`` always, ``best`` when the selected metric improved; returns whether it did."""
    scores = headline(metrics)
    provenance = {
        "trainer": "training.train",
        "epoch": epoch,
        "global_step": progress["global_step"],
        "data": run.description,
        "metrics": scores,
        "selected_by": run.args.select_metric,
        "settings": run.identity,
    }
    save_checkpoint(run.core, run.out / "last.safetensors", provenance=provenance)
    score = scores[run.args.select_metric]
    if progress["best_score"] is None or score > progress["best_score"]:
        progress.update(best_score=score, best_epoch=epoch)
        save_checkpoint(run.core, run.out / "best.safetensors", provenance=provenance)
        return True
    return False


def save_progress(run: Run, progress: dict) -> None:
    # Collectives first: every process's RNG state, and the epoch's loss so far summed over processes.
    rngs = rng_states(run.ctx)
    loss_sum, loss_count = all_reduce_sum([progress["loss_sum"], progress["loss_count"]], run.ctx)
    if run.ctx.is_main:
        saved = {**progress, "loss_sum": loss_sum, "loss_count": loss_count, "identity": run.identity}
        save_state(run.out / STATE_FILE, run.core, run.optimizer, saved, rngs)
    barrier(run.ctx)


def start_or_resume(run: Run) -> dict:
    state_path = run.out / STATE_FILE
    if not run.args.resume:
        if state_path.exists() or (run.out / LOG_FILE).exists():
            raise ResumeError(f"{run.out} already holds a run: pass --resume to continue it, or choose another --out")
        return {
            "epoch": 1,
            "step": 0,
            "global_step": 0,
            "loss_sum": 0.0,
            "loss_count": 0,
            "best_score": None,
            "best_epoch": None,
            "world_size": run.ctx.world_size,
        }
    if not state_path.exists():
        raise ResumeError(f"--resume: no resume state {state_path}")
    tensors, progress = load_state(state_path)
    changed = sorted(k for k in run.identity if k != "world_size" and progress["identity"].get(k) != run.identity[k])
    if changed:
        raise ResumeError(f"--resume: the run in {run.out} was started with different settings: {changed}")
    restore(tensors, progress, run.core, run.optimizer, run.ctx)
    if progress["world_size"] != run.ctx.world_size and run.ctx.is_main:
        print(
            f"note: resuming with {run.ctx.world_size} processes instead of {progress['world_size']}: data order "
            "and random draws differ from an uninterrupted run",
            file=sys.stderr,
        )
    if run.ctx.is_main and (run.out / LOG_FILE).exists():
        # Drop log lines of an epoch the killed run logged but did not finish saving.
        lines = (run.out / LOG_FILE).read_text().splitlines()
        kept = [line for line in lines if json.loads(line)["epoch"] < progress["epoch"]]
        (run.out / LOG_FILE).write_text("".join(line + "\n" for line in kept))
    progress["world_size"] = run.ctx.world_size
    if not run.ctx.is_main:  # the saved partial-epoch loss is the sum over processes: count it once
        progress.update(loss_sum=0.0, loss_count=0)
    return {
        k: v
        for k, v in progress.items()
        if k not in ("identity", "optimizer_param_groups", "optimizer_scalars", "backbone_sha256")
    }


def train(run: Run) -> dict:
    args, ctx = run.args, run.ctx
    run.out.mkdir(parents=True, exist_ok=True)
    progress = start_or_resume(run)
    if ctx.is_main:
        print(
            f"{run.description}; {run.batches.steps_per_epoch} steps per epoch on {ctx.world_size} process(es), "
            f"device {ctx.device}",
            flush=True,
        )
    while progress["epoch"] <= args.epochs:
        epoch, started = progress["epoch"], time.time()
        lr = run.schedule.lr(epoch)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        batches = run.batches.batches(epoch, progress["step"])
        run.model.train()
        loader = make_loader(run.train_set, batches, args.workers, ctx.device)
        bar = tqdm(
            loader,
            total=len(batches),
            desc=f"epoch {epoch}/{args.epochs}",
            leave=False,
            disable=not ctx.is_main or None,
        )
        for frames, labels, _ in bar:
            frames, labels = frames.to(ctx.device, non_blocking=True), labels.to(ctx.device, non_blocking=True)
            with autocast(ctx.device, args.precision):
                logits = run.model(frames)
            loss = run.criterion(logits.float(), labels)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            progress["loss_sum"] += loss.item() * len(labels)
            progress["loss_count"] += len(labels)
            progress["step"] += 1
            progress["global_step"] += 1
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if args.max_steps and progress["global_step"] >= args.max_steps:
                save_progress(run, progress)
                if ctx.is_main:
                    print(
                        f"stopped after {progress['global_step']} steps (--max-steps); --resume continues", flush=True
                    )
                return progress
            if args.save_every_steps and progress["global_step"] % args.save_every_steps == 0:
                save_progress(run, progress)

        loss_sum, loss_count = all_reduce_sum([progress["loss_sum"], progress["loss_count"]], ctx)
        record = {
            "epoch": epoch,
            "lr": lr,
            "global_step": progress["global_step"],
            "train_loss": loss_sum / max(loss_count, 1),
        }
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            record["eval_loss"], metrics = evaluate_epoch(run)
            if ctx.is_main:
                record["best"] = write_checkpoints(run, progress, epoch, metrics)
                record.update(headline=headline(metrics), metrics=metrics)
        record["time_s"] = round(time.time() - started, 2)
        if ctx.is_main:
            with open(run.out / LOG_FILE, "a") as log:
                log.write(json.dumps(record) + "\n")
            shown = " ".join(f"{k} {v:.4f}" for k, v in record.get("headline", {}).items())
            print(
                f"epoch {epoch}: lr {lr:.2e} train_loss {record['train_loss']:.4f} "
                f"{'eval_loss ' + format(record['eval_loss'], '.4f') if 'eval_loss' in record else ''} {shown}",
                flush=True,
            )
        progress.update(epoch=epoch + 1, step=0, loss_sum=0.0, loss_count=0)
        save_progress(run, progress)
    if ctx.is_main:
        print(
            f"done: {args.epochs} epochs; best {args.select_metric} {progress['best_score']:.4f} at epoch "
            f"{progress['best_epoch']} -> {run.out / 'best.safetensors'}",
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
