"""The loop's devices and batches: the accelerator (device, mixed precision, processes) and one
optimiser step's global batch split across processes and micro-batches.

Every process builds the same global batch and takes a contiguous slice of its rows; each
micro-batch's loss is its rows' sum divided by the *global* row count, times the number of
processes, so that DDP's gradient average and the accumulated micro-batches equal the
single-process gradient of the whole batch (up to float summation order).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from confdistill.distillation.job import Job
from confdistill.distillation.steps import StepContext
from confdistill.errors import InputError

#: Kinds trained on the stage-1 loss (task stage 1, general distillation): their MSE averages over
#: the global batch's padding too, so a process's slice keeps the global width.
STAGE1_KINDS = ("intermediate", "general")


def accelerator_for(accelerator_class: Any, job: Job) -> Any:
    """The accelerator of ``job.device`` / ``mixed_precision``; a one-line error where it cannot run."""
    device, precision = job.device, job.loop.mixed_precision
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    on_cpu = device == "cpu" or not torch.cuda.is_available()
    if precision == "fp16" and on_cpu:
        raise InputError("--mixed-precision fp16 needs a CUDA device; on the CPU use bf16 or no")
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != precision:
        # One process may run jobs of several precisions (an experiment's fine-tuning and stages);
        # accelerate keeps one global state: reset its precision part, keep the processes' group.
        AcceleratorState._reset_state(reset_partial_state=False)
    try:
        accelerator = accelerator_class(cpu=device == "cpu", mixed_precision=precision)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"--mixed-precision {precision} / --device {device}: {exc}") from None
    if accelerator.device.type == "cpu" and accelerator.num_processes > 1 and "OMP_NUM_THREADS" not in os.environ:
        # The cores are shared by the local processes: oversubscribed OpenMP threads spin and are
        # many times slower. (One process keeps torch's default: one thread per physical core.)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // accelerator.num_processes))
    return accelerator


#: Variables every ``accelerate launch`` launcher sets in the processes it starts.
_LAUNCHED_BY_ACCELERATE = ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_DYNAMO_BACKEND", "ACCELERATE_USE_CPU")
#: Where the number of processes is read from, as accelerate reads it (torchrun, MPI launchers).
_WORLD_SIZE_VARIABLES = ["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"]


def single_process_launch_note(command: str) -> str | None:
    """One line when ``accelerate launch`` started this command as its only process, else None.

    ``accelerate launch --num_processes N`` without ``--multi_gpu`` on a machine without GPUs (and
    ``--cpu`` without an MPI host file) runs its simple launcher: one process, whatever N says,
    and the run would only record ``world_size: 1``. torchrun (``--multi_gpu``) and MPI set the
    world size this reads.
    """
    from accelerate.utils import get_int_from_env

    if not any(name in os.environ for name in _LAUNCHED_BY_ACCELERATE):
        return None
    if get_int_from_env(_WORLD_SIZE_VARIABLES, 1) > 1:
        return None
    return (f"{command}: accelerate launch started 1 process here (world size 1); for N processes on a CPU-only "
            f"machine use `accelerate launch --multi_gpu --num_processes N --num_machines 1 -m confdistill "
            f"{command} … --device cpu` (without --multi_gpu, --num_processes N still runs one)")


def accumulate(model: torch.nn.Module, rows: list[int], collate: Any, ctx: StepContext, step_loss: Any,
                accelerator: Any, job: Job) -> dict[str, float]:
    """Forward and backward of one global batch in G micro-batches; returns the logged global losses."""
    rank, world = accelerator.process_index, accelerator.num_processes
    chunks = micro_batches(rows, job.loop.gradient_accumulation_steps)
    totals: dict[str, torch.Tensor] = {}
    for i, chunk in enumerate(chunks):
        batch = local_slice(collate(chunk), rank, world, trim=job.kind not in STAGE1_KINDS)
        scale = world * batch.pop("_weight")  # see the module docstring: global mean under DDP averaging
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        last = i == len(chunks) - 1
        with contextlib.nullcontext() if last or world == 1 else accelerator.no_sync(model):
            loss, parts = step_loss(model, batch, ctx, len(rows))
            accelerator.backward(loss * scale)
        for name, value in {"loss": loss, **parts}.items():
            totals[name] = totals.get(name, 0.0) + value.detach().float() * scale
    names = list(totals)
    values = torch.stack([totals[n] for n in names])
    if world > 1:  # one collective per step for all logged numbers
        values = accelerator.reduce(values.to(accelerator.device), "mean")
    return dict(zip(names, values.tolist(), strict=True))


def micro_batches(rows: list[int], n: int) -> list[list[int]]:
    size = -(-len(rows) // max(1, n))
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def local_slice(batch: dict[str, torch.Tensor], rank: int, world: int, *, trim: bool) -> dict[str, Any]:
    """This process's contiguous rows of the global batch; ``_weight`` 0 marks a filler row.

    When the global batch has fewer rows than processes, a process gets row 0 with weight 0 (DDP
    needs every process to run forward/backward). ``trim`` drops padding columns no local row uses
    (exact for logits; stage 1 keeps the global width because its MSE averages over padding too).
    """
    n = batch["input_ids"].shape[0]
    weight = 1.0
    if world > 1:
        chunk = -(-n // world)
        lo, hi = rank * chunk, min(n, (rank + 1) * chunk)
        if lo >= hi:
            lo, hi, weight = 0, 1, 0.0
        batch = {k: v[lo:hi] for k, v in batch.items()}
    if trim:
        width = int(batch["attention_mask"].sum(1).max())
        if width < batch["input_ids"].shape[1]:
            batch = {k: (v[:, :width] if v.dim() == 2 else v) for k, v in batch.items()}
    batch["_weight"] = weight
    return batch


def samples_in_steps(sampler: Any, steps: int, steps_per_epoch: int) -> int:
    """Examples processed by the first ``steps`` steps (all batches full except each epoch's last)."""
    n = len(sampler.lengths)
    full_epochs, rest = divmod(steps, steps_per_epoch)
    return full_epochs * n + min(rest * sampler.batch_size, n)
