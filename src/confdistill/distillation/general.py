"""General distillation (TinyBERT's first stage) on unlabeled text, read top to bottom like trainer.py.

:func:`general_distill` trains a fresh student (:func:`~confdistill.models.general_student.fresh_student`)
to match a teacher's attention scores and hidden states on a streamed corpus
(:mod:`confdistill.data.corpus`), with the stage-1 loss of task distillation
(:func:`~.steps.stage1_loss`: pre-softmax scores with masked entries zeroed, hidden states with the
embedding output, MSE, the mapped layers) as TinyBERT's ``general_distill.py`` computes it. What
differs from the task stage follows TinyBERT's script: **one shared** ``fit_dense`` projects every
hidden state (its ``TinyBertForPreTraining``), and the learning rate warms up linearly over
``warmup_proportion`` of the steps and then decays linearly (BertAdam's ``warmup_linear``; the task
stage keeps it constant). With a sliced start (``encoder_init = "sliced"``) the shared fit_dense
starts at its ridge least-squares fit (:func:`least_squares_fit_dense`) instead of TinyBERT's random
draw. Differences from TinyBERT's script: docs/method.md, "General distillation".

Layout of ``OUT``::

    OUT/run.json          settings, versions, corpus SHA-256s, rows seen, timings, the student's shape
    OUT/metrics.jsonl     one line per step ({"step", "epoch", "lr", "loss", "att_loss", "rep_loss"})
    OUT/loss_curves.png   the loss curves
    OUT/final/            the student's encoder (Hugging Face format, tokenizer, student.json) and
                          fit_denses.pt (the shared projection, once per hidden state, so that
                          ``confdistill distill --student OUT/final`` starts stage 1 from it)
    OUT/checkpoints/      step-XXXXXXXX/state.pt: weights, optimiser, scheduler, RNG, epoch and position

Several processes (``accelerate launch``): every process reads the same stream (same seed → same
batches), tokenises the whole global batch (one padding width) and takes its contiguous slice of
rows with the trainer's split (:mod:`.batches`), so the gradient equals the single-process one.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from confdistill.console import quiet
from confdistill.distillation.batches import accelerator_for, accumulate
from confdistill.distillation.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from confdistill.distillation.general_config import GeneralConfig
from confdistill.distillation.job import Job, check_same_settings
from confdistill.distillation.losses import make_fit_denses
from confdistill.distillation.optim import make_optimizer, make_scheduler
from confdistill.distillation.run_files import (
    MetricsLog,
    claim_run_dir,
    launch_rank,
    read_run,
    refuse_existing_run,
    truncate_metrics,
)
from confdistill.distillation.run_record import now, versions
from confdistill.distillation.steps import Stage1Student, StepContext, stage1_step
from confdistill.folders import clear_directory
from confdistill.io import atomic_path, save_tensors, write_json
from confdistill.models.families import family_of, model_inputs

__all__ = ["FIT_DENSE_BATCHES", "RIDGE", "general_distill", "least_squares_fit_dense", "shared_fit_dense"]

#: With a sliced start, the shared fit_dense is fitted by least squares on this many of the first
#: batches before training (the first 256 texts at batch 32: a 193-unknown fit per teacher dimension
#: over thousands of tokens).
FIT_DENSE_BATCHES = 8
#: Its ridge, relative to the students' mean variance per dimension (see least_squares_fit_dense).
RIDGE = 1e-3


def shared_fit_dense(student_width: int, teacher_width: int, student_layers: int) -> nn.ModuleList | None:
    """TinyBERT's general-distillation projection: ONE ``Linear(d_s → d_t)`` applied to every hidden state.

    Returned as a ModuleList holding the same module M+1 times, so :class:`~.steps.Stage1Student`
    and the stage-1 loss use it unchanged (the optimiser sees its parameters once) and its state
    dict has the per-state layout of task distillation's ``fit_denses``. None for equal widths (as
    in task distillation: no projection). Initialised as TinyBERT's: N(0, 0.02²) weights, zero bias.
    """
    one = make_fit_denses(student_width, teacher_width, 0)
    return None if one is None else nn.ModuleList([one[0]] * (student_layers + 1))


@torch.no_grad()
def least_squares_fit_dense(student: nn.Module, teacher: nn.Module, mapping: list[int],
                            batches: list[dict[str, torch.Tensor]], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``Linear(d_s → d_t)`` (weight (d_t, d_s), bias (d_t,)) minimising
    Σ ‖W·h_s + b − h_t‖² + λ‖W‖²_F over every student state m = 0..M and its teacher state
    ``mapping[m]``, on the non-padding tokens of ``batches``, without dropout (the student is put in
    eval mode for the fit and back; the teacher is expected in eval mode, as the loop keeps it).

    One map for all states, as the shared fit_dense. The small ridge λ = RIDGE · tr(Σ_xx)/d_s (Σ_xx
    the students' centred scatter matrix; the bias is not penalised) is needed, not cosmetic: a
    LayerNorm output lies in a hyperplane (its normalised coordinates sum to zero), so plain least
    squares is ill-posed and returns huge, cancelling weights. Solved from sums accumulated in float64
    on the CPU (memory does not grow with the tokens); equals scikit-learn's ``Ridge(alpha=λ)``.
    """
    width, teacher_width, f64 = int(student.config.hidden_size), int(teacher.config.hidden_size), torch.float64
    n, sum_x, sum_y = 0, torch.zeros(width, dtype=f64), torch.zeros(teacher_width, dtype=f64)
    xx, xy = torch.zeros(width, width, dtype=f64), torch.zeros(width, teacher_width, dtype=f64)
    was_training = student.training
    student.eval()
    for inputs in batches:
        inputs = {k: v.to(device) for k, v in inputs.items()}
        s_states = student.base_model(**model_inputs(student, inputs), output_hidden_states=True).hidden_states
        t_states = teacher.base_model(**model_inputs(teacher, inputs), output_hidden_states=True).hidden_states
        keep = inputs["attention_mask"].bool()
        for m, g in enumerate(mapping):
            x, y = s_states[m][keep].double().cpu(), t_states[g][keep].double().cpu()
            n += len(x)
            sum_x += x.sum(0)
            sum_y += y.sum(0)
            xx += x.T @ x
            xy += x.T @ y
    student.train(was_training)
    mean_x, mean_y = sum_x / n, sum_y / n
    scatter = xx - n * torch.outer(mean_x, mean_x)
    ridge = RIDGE * torch.trace(scatter) / width
    w_t = torch.linalg.solve(scatter + ridge * torch.eye(width, dtype=torch.float64),
                             xy - n * torch.outer(mean_x, mean_y))        # (d_s, d_t)
    return w_t.T.float().contiguous(), (mean_y - mean_x @ w_t).float()


def general_distill(config: GeneralConfig, *, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Run general distillation as configured; returns the contents of ``OUT/run.json``.

    stop_after_steps: testing aid, stop (raise ``TrainingInterrupted``) after this global step.
    """
    config.validate()
    out = Path(config.out)
    with claim_run_dir(out, resume=config.resume, overwrite=config.overwrite):
        return _train(config, out, stop_after_steps)


def _train(config: GeneralConfig, out: Path, stop_after_steps: int | None) -> dict[str, Any]:
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from confdistill.data.corpus import TextCollator, scan_corpus
    from confdistill.distillation.mapping import check_compatible, layer_mapping
    from confdistill.distillation.trainer import TrainingInterrupted
    from confdistill.errors import InputError
    from confdistill.models.general_student import (
        check_shape,
        fresh_student,
        residual_projection,
        slice_teacher_layers,
    )
    from confdistill.models.hub import resolve_model_dir
    from confdistill.models.loading import load_classifier, save_classifier
    from confdistill.models.student import check_sizes

    t_start = time.time()
    loop, shape = config.loop(), config.student
    assert shape is not None
    # ---- 1. Inputs (corpus, teacher, student) checked before anything is written ---------------
    corpus = scan_corpus(config.corpus, config.text_column)
    check_sizes(layers=shape.layers, hidden=shape.hidden, heads=shape.heads, intermediate=shape.intermediate)
    teacher, tokenizer = load_classifier(resolve_model_dir(config.teacher, what="--teacher"))  # an alias, a Hub id
    family = family_of(teacher)
    if shape.encoder_init == "sliced" and not family.sliceable:
        raise InputError(f"encoder_init 'sliced' needs BERT's attention layout (bert, roberta, xlm-roberta, electra); "
                         f"the teacher is {teacher.config.model_type}: use encoder_init 'fresh'", path=config.teacher)
    check_shape(teacher.config, layers=shape.layers, hidden=shape.hidden, heads=shape.heads,
                intermediate=shape.intermediate, sliced=shape.encoder_init == "sliced")
    kept = [g - 1 for g in layer_mapping(shape.layers, teacher.config.num_hidden_layers, config.layer_mapping)[1:]]
    # the embeddings, the sliced layers and their fit_dense share one projection (an SVD of the word embeddings)
    projection = residual_projection(teacher, shape.hidden) if shape.encoder_init == "sliced" else None
    student, student_record = fresh_student(teacher, layers=shape.layers, hidden=shape.hidden, heads=shape.heads,
                                            intermediate=shape.intermediate, embeddings=shape.embeddings,
                                            seed=loop.seed, projection=projection, teacher_layers=kept)
    mapping = check_compatible(student.config, teacher.config, config.layer_mapping)
    if projection is not None:
        try:  # student attention layer m (1-based) is matched to teacher layer mapping[m]
            student_record.update(slice_teacher_layers(student, teacher, [g - 1 for g in mapping[1:]], projection))
        except ValueError as exc:
            raise InputError(str(exc)) from None
    checkpoints_dir = out / "checkpoints"
    if config.overwrite and launch_rank() == 0:
        clear_directory(out)  # only now that the inputs are known to be good
    previous, record = read_run(out), config.resume_record()
    if not config.resume:
        refuse_existing_run(out)
    elif previous.get("status") == "complete":
        return previous
    elif previous:
        check_same_settings(previous.get("job", {}), record, out)

    # ---- 2. Devices, precision, seeds ------------------------------------------------------------
    job = Job("general", out, str(out / "final"), config.teacher, "", "", loop=loop, device=config.device)
    accelerator = accelerator_for(Accelerator, job)
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    random.seed(loop.seed)
    np.random.seed(loop.seed)
    torch.manual_seed(loop.seed + rank)  # per-process dropout streams; rank 0 = the 1-process run

    # ---- 3. Data: streamed, shuffled per (seed, epoch), tokenised per batch ---------------------
    collate = TextCollator(tokenizer, loop.max_seq_length, pad_to_max_length=loop.pad_to_max_length)
    batch_size, rows = loop.train_batch_size, corpus.rows
    steps_per_epoch = corpus.steps_per_epoch(batch_size)
    total_steps = max(1, math.ceil(loop.num_train_epochs * steps_per_epoch))
    started = previous.get("started") or now()
    if accelerator.is_main_process:
        write_json(out / "run.json", {"status": "running", "job": record, "settings": config.to_dict(),
                                      "started": started})

    # ---- 4. Models -----------------------------------------------------------------------------
    student.to(device)
    teacher.to(device).eval()
    fit_denses = shared_fit_dense(shape.hidden, int(teacher.config.hidden_size), shape.layers)
    if fit_denses is not None and projection is not None:
        # the sliced student's states already mean something: start the projection at the linear map
        # that fits the teacher's states best, so the hidden-state term's first gradients correct the
        # student instead of dragging it towards an arbitrary (random, or mis-scaled P) map
        fit_batches = [collate(texts) for texts in itertools.islice(
            corpus.batches(seed=loop.seed, epoch=0, batch_size=batch_size, buffer_size=config.shuffle_buffer),
            FIT_DENSE_BATCHES)]
        weight, bias = least_squares_fit_dense(student, teacher, mapping, fit_batches, device)
        with torch.no_grad():
            fit_denses[0].weight.copy_(weight)
            fit_denses[0].bias.copy_(bias)
        student_record["fit_dense_init"] = (
            f"ridge least squares: the map of the student's {shape.layers + 1} states to the teacher's that fits "
            f"best on the non-padding tokens of the first {len(fit_batches)} batches (sliced start)")
    model: nn.Module = Stage1Student(student, fit_denses)
    for name, p in student.named_parameters():  # pooler and head: not reached by the loss (DDP needs grads)
        if not name.startswith(student.base_model_prefix + ".") or ".pooler." in name:
            p.requires_grad_(False)
    ctx = StepContext("intermediate", False, teacher=teacher, mapping=mapping,
                      autocast=accelerator.autocast)
    model.train()
    optimizer = make_optimizer(model, loop.learning_rate, loop.weight_decay, device)
    scheduler = make_scheduler(optimizer, "general", loop.warmup_proportion, total_steps)  # warm-up, decay
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)

    # ---- 5. Resume -------------------------------------------------------------------------------
    step, epoch, position, log_lines = 0, 0, 0, 0
    ckpt = latest_checkpoint(checkpoints_dir) if config.resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
        progress = state["progress"]
        step, epoch, position, log_lines = (progress["step"], progress["epoch"], progress["position"],
                                            progress["metrics_lines"])
        accelerator.print(f"resuming {out} from {ckpt.name} (step {step}/{total_steps})")
    metrics_path = out / "metrics.jsonl"
    kept = truncate_metrics(metrics_path, lines=log_lines, step=step) if accelerator.is_main_process else 0
    log = MetricsLog(metrics_path, enabled=accelerator.is_main_process, lines=kept)
    bar = tqdm(total=_rows_in_steps(total_steps, steps_per_epoch, batch_size, rows),
               initial=_rows_in_steps(step, steps_per_epoch, batch_size, rows), unit="ex", unit_scale=True,
               dynamic_ncols=True, disable=not accelerator.is_local_main_process or quiet(), desc=f"general {out.name}")
    train_seconds, train_samples = 0.0, 0
    last_checkpoint_step = step if ckpt is not None else -1

    def checkpoint() -> None:
        nonlocal last_checkpoint_step
        last_checkpoint_step = step
        at_end = position >= steps_per_epoch   # the next step starts the next epoch
        states = [rng_state()]
        if world > 1:
            from accelerate.utils import gather_object
            states = gather_object([rng_state()])
        if accelerator.is_main_process:
            log.flush(durable=True)
            save_checkpoint(checkpoints_dir, step, {
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": states,
                "progress": {"step": step, "epoch": epoch + 1 if at_end else epoch,
                             "position": 0 if at_end else position, "total_steps": total_steps,
                             "metrics_lines": log.lines},
            })
        accelerator.wait_for_everyone()

    # ---- 6. The loop ----------------------------------------------------------------------------
    while step < total_steps:
        for texts in corpus.batches(seed=loop.seed, epoch=epoch, batch_size=batch_size,
                                    buffer_size=config.shuffle_buffer, skip=position):
            if step >= total_steps:
                break
            t0 = time.perf_counter()
            losses = accumulate(model, texts, collate, ctx, stage1_step, accelerator, job)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            position += 1

            entry = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0], **losses}
            log.write(entry)
            train_seconds += time.perf_counter() - t0
            train_samples += len(texts)
            bar.update(len(texts))
            if step % 20 == 0 or step == total_steps:
                bar.set_postfix(loss=f"{entry['loss']:.4g}", refresh=False)
            if loop.checkpoint_steps and step % loop.checkpoint_steps == 0:
                checkpoint()
            if stop_after_steps is not None and step >= stop_after_steps and step < total_steps:
                log.close()
                bar.close()
                raise TrainingInterrupted(f"stopped after step {step} (stop_after_steps)")
        if position >= steps_per_epoch:
            if last_checkpoint_step != step:
                checkpoint()  # epoch end (unless the step checkpoint just did it)
            epoch, position = epoch + 1, 0
    bar.close()
    log.close()

    # ---- 7. Outputs ------------------------------------------------------------------------------
    if accelerator.is_main_process:
        trained = raw_model.student
        final_dir = save_classifier(trained.base_model, tokenizer, out / "final",
                                    extra_json={"student.json": {"from": config.teacher, "mode": "general",
                                                                 **student_record}})
        if fit_denses is not None:
            with atomic_path(Path(final_dir) / "fit_denses.pt") as tmp:
                save_tensors({k: v.detach().clone() for k, v in raw_model.fit_denses.state_dict().items()}, tmp)
        from confdistill.reports.run_plots import plot_loss_curves

        plot_loss_curves(metrics_path, out / "loss_curves.png", metric="loss")
        timings = {"started": started, "finished": now(), "wall_seconds": time.time() - t_start,
                   "train_seconds_this_session": train_seconds,
                   "train_samples_per_second": train_samples / train_seconds if train_seconds else None}
        write_json(out / "run.json", {
            "status": "complete", "stage": "general", "job": record, "settings": config.to_dict(),
            "student": student_record, "layer_mapping": mapping, "layer_mapping_strategy": config.layer_mapping,
            "fit_denses": "none (equal widths)" if fit_denses is None else
                          f"one shared Linear({shape.hidden} -> {teacher.config.hidden_size}) for all "
                          f"{shape.layers + 1} hidden states (TinyBERT's general distillation)",
            "schedule": "linear warm-up then linear decay",
            "corpus": corpus.to_dict(), "rows_per_epoch": rows,
            "rows_seen": _rows_in_steps(total_steps, steps_per_epoch, batch_size, rows),
            "steps": total_steps, "steps_per_epoch": steps_per_epoch, "world_size": world,
            "device": str(device), "mixed_precision": loop.mixed_precision,
            "models": {"teacher": config.teacher}, "outputs": {"final": str(out / "final")},
            "versions": versions(), "timings": timings})
    accelerator.wait_for_everyone()
    return read_run(out)


def _rows_in_steps(steps: int, steps_per_epoch: int, batch_size: int, rows: int) -> int:
    """Texts trained on by the first ``steps`` steps (every batch full except each epoch's last)."""
    full_epochs, rest = divmod(steps, steps_per_epoch)
    return full_epochs * rows + min(rest * batch_size, rows)
