"""The model's forward pass compiled with torch.compile (inductor) for the batch sizes warm-up runs, with CUDA graphs
on CUDA (``mode="reduce-overhead"``), behind ``VTFPAR_COMPILE``.

Every batch is padded with blank clips up to the smallest warmed size that holds it, and only the caller's rows
are returned: serving then runs only graphs that warm-up compiled (and on CUDA captured), so no request ever pays
for a compilation or a capture. Padding changes no row: clips never interact in the network (attention is within a
clip; the logit BatchNorm runs on its stored statistics in eval mode).

The batch dimension is compiled as dynamic from size 2 up, so one graph serves 2, 4, 8, ... (size 1 is always
specialised by torch.compile and gets its own): two compilations, not one per size, compiling being the slow part
of start-up. On CUDA each warmed size still gets its own captured CUDA graph.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import torch

# torch's CUDA graph trees (torch/_inductor/cudagraph_trees.py, CUDAGraphTreeManager._run) run the first call of each
# shape eagerly, as a warm-up in the graphs' memory pool, and record the shape's graph on its second call; from the
# third on the graph replays. Warm-up calls each size this often, so that no request pays for a capture.
CALLS_TO_CAPTURE = 2


def resolve_compile(requested: str, device: torch.device) -> bool:
    """``auto`` compiles on CUDA only: on CPU compiling takes minutes and serving starts with the demo model."""
    return requested == "on" or (requested == "auto" and device.type == "cuda")


class CompiledForward:
    """``forward(batch)`` through torch.compile, for the sizes in ``sizes`` (set by warm-up) and padded up to them;
    ``forward`` gives a tensor or a tuple of them (the served model: ``VTFPAR.forward_with_embedding``'s logits and
    appearance embeddings), each with a row per clip."""

    def __init__(
        self, forward: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]], device: torch.device
    ):
        self.cuda_graphs = device.type == "cuda"
        self._forward = torch.compile(forward, mode="reduce-overhead" if self.cuda_graphs else None, fullgraph=True)
        self.sizes: list[int] = []  # ascending; the batch sizes warm-up ran

    @property
    def warmup_calls(self) -> int:
        """How often warm-up runs each size: once compiles it; on CUDA, capturing its graph takes more."""
        return CALLS_TO_CAPTURE if self.cuda_graphs else 1

    def padded_size(self, rows: int) -> int:
        """The warmed size a batch of ``rows`` clips runs at (itself beyond the largest: compiled then)."""
        at = bisect.bisect_left(self.sizes, rows)
        return self.sizes[at] if at < len(self.sizes) else rows

    def __call__(self, batch: torch.Tensor):
        # One memory layout: on CUDA a batch of one frame size comes out of preprocessing channels-last and a mixed
        # or padded one contiguous, and dynamo guards on strides, so a second layout would recompile on a request.
        batch = batch.contiguous()
        rows = batch.shape[0]
        size = self.padded_size(rows)
        if size > rows:
            batch = torch.cat([batch, batch.new_zeros((size - rows, *batch.shape[1:]))])
        if size > 1:
            torch._dynamo.mark_dynamic(batch, 0)
        if self.cuda_graphs:
            # A new step for the CUDA graph trees: the previous batch's outputs (copied out already) may be reused.
            torch.compiler.cudagraph_mark_step_begin()
        out = self._forward(batch)
        return tuple(part[:rows] for part in out) if isinstance(out, tuple) else out[:rows]
