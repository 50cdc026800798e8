"""The training loop: TinyBERT stage 1, stage 2, and teacher fine-tuning, read top to bottom.

:func:`train` prepares the job (inputs checked before anything is written, devices, data, models),
then runs one loop like nanoGPT's ``train.py``: batch, loss (the kind's step function,
:mod:`.steps`), backward, step, log, evaluate, checkpoint. Run-folder bookkeeping lives in
:mod:`.run_files` / :mod:`.run_record`, evaluation and teacher logits in :mod:`.evaluation`.

Layout of ``OUT`` (one job)::

    OUT/run.json          settings, versions, data SHA-256s, timings, eval results, β (stage 2)
    OUT/metrics.jsonl     one line per step ({"step", "loss", …}) and per evaluation ({"eval": …})
    OUT/loss_curves.png   the loss (and eval metric) curves
    OUT/final/            the model after the last step (Hugging Face format; stage 1 adds fit_denses.pt)
    OUT/best/             stage 2 / fine-tuning: the evaluation-best model by the task's TinyBERT metric
    OUT/checkpoints/      step-XXXXXXXX/state.pt: weights, optimiser, scheduler, RNG, data position
    OUT/teacher_logits.pt stage 2: teacher logits over the train split, computed once
    OUT/teacher_eval_logits.pt  stage 2: teacher logits over the evaluation split (for σ at each eval)
    OUT/teacher_beta_logits.pt  stage 2 with --aug-train: teacher logits over the task's own train split (β)

``stage="both"`` (the default) runs stage 1 in ``OUT/intermediate/`` and then stage 2 in ``OUT``
itself with ``OUT/intermediate/final`` as its student.

Every stage-2 evaluation also measures ``sigma`` and ``n_both`` and calls the callback installed
with :func:`evaluation_hook` (e.g. a tuner that prunes poor trials by raising; the run's state is
checkpointed first, so ``--resume`` continues it).

Data parallelism (``accelerate launch --num_processes P``): every process builds the same global
batch (same seed → same order) and takes a contiguous slice of its rows; each process's loss is
its rows' sum divided by the *global* row count, times P, so that DDP's gradient average equals the
single-process gradient. Gradient accumulation splits the global batch into G micro-batches the
same way (TinyBERT's convention): the same gradient, less memory.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from confdistill.console import quiet
from confdistill.distillation.batches import accelerator_for, accumulate, samples_in_steps
from confdistill.distillation.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_fit_denses,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from confdistill.distillation.config import DistillConfig, FinetuneConfig
from confdistill.distillation.evaluation import cached_teacher_logits, evaluate, predict, selection_metric
from confdistill.distillation.job import Job, check_same_settings, distill_jobs, finetune_job, job_record
from confdistill.distillation.losses import beta_statistics, make_fit_denses
from confdistill.distillation.optim import make_optimizer, make_scheduler
from confdistill.distillation.prepare import check_evaluation_split, prepare_inputs
from confdistill.distillation.run_files import (
    MetricsLog,
    claim_run_dir,
    launch_rank,
    read_run,
    refuse_existing_run,
    truncate_metrics,
)
from confdistill.distillation.run_record import complete_record, now, running_record
from confdistill.distillation.steps import STEPS, Stage1Student, StepContext, stage1_loss
from confdistill.folders import clear_directory
from confdistill.io import atomic_path, save_tensors, write_json

__all__ = ["Stage1Student", "TrainingInterrupted", "distill", "evaluation_hook", "finetune", "stage1_loss", "train"]


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_steps`` (tests): the run stops as if killed, checkpoints stay on disk."""


#: The callback of :func:`evaluation_hook`, per context (so no caller in between has to pass it on).
_EVAL_HOOK: contextvars.ContextVar[Callable[[dict[str, Any]], None] | None] = contextvars.ContextVar(
    "confdistill_evaluation_hook", default=None)


@contextlib.contextmanager
def evaluation_hook(callback: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Call ``callback(info)`` after every stage-2 evaluation of any :func:`distill` run inside the block.

    ``info = {"job": "prediction", "out": str(OUT), "step": int, "epoch": float (steps / steps per
    epoch), "metrics": {task metrics…, "sigma": float | None, "n_both": int | None}}``. An exception
    raised by the callback (e.g. ``optuna.TrialPruned``) propagates out of :func:`distill` unchanged,
    after the run's state at that step is checkpointed, so ``--resume`` can continue it. Under several
    processes the callback runs on every process (same info on each): it must decide the same way on
    all. Nested blocks: the innermost callback applies.
    """
    token = _EVAL_HOOK.set(callback)
    try:
        yield
    finally:
        _EVAL_HOOK.reset(token)


def distill(config: DistillConfig, *, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Run TinyBERT task distillation as configured; returns the contents of ``OUT/run.json``.

    stop_after_steps: testing aid, stop (raise :class:`TrainingInterrupted`) after this global step.
    """
    config.validate()
    out = Path(config.out)
    with claim_run_dir(out, resume=config.resume, overwrite=config.overwrite):
        jobs = distill_jobs(config, out)
        if len(jobs) == 1:
            return train(jobs[0], stop_after_steps)
        stage1, stage2 = jobs
        if not config.resume and not config.overwrite:
            refuse_existing_run(out)
        check_evaluation_split(stage2)  # stage 2's data problems are found before stage 1 trains
        if config.overwrite or read_run(stage1.out).get("status") != "complete":
            train(stage1, stop_after_steps)
        return train(stage2, stop_after_steps, stage1=read_run(stage1.out))


def finetune(config: FinetuneConfig, *, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Fine-tune a classifier on a task with the hard-label loss (the teacher's training); returns run.json."""
    config.validate()
    with claim_run_dir(Path(config.out), resume=config.resume, overwrite=config.overwrite):
        return train(finetune_job(config), stop_after_steps)


def train(job: Job, stop_after_steps: int | None = None, stage1: dict | None = None) -> dict[str, Any]:
    """Run one job (see the module docstring); returns its run.json."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from confdistill.data import encode, make_loader
    from confdistill.models.loading import load_classifier, save_classifier

    t_start = time.time()
    loop = job.loop
    # ---- 1. Inputs (data, models) checked before anything is written ------------------------
    inputs = prepare_inputs(job)
    spec, student, tokenizer, teacher = inputs.spec, inputs.student, inputs.tokenizer, inputs.teacher
    out, checkpoints_dir = job.out, job.out / "checkpoints"
    if job.clear_dir is not None and launch_rank() == 0:
        clear_directory(job.clear_dir)  # --overwrite: only now that the inputs are known to be good
    previous = read_run(out)
    if not job.resume:
        refuse_existing_run(out)
    elif previous.get("status") == "complete":
        return previous
    elif previous:
        check_same_settings(previous.get("job", {}), job_record(job), out)

    # ---- 2. Devices, precision, seeds, threads -------------------------------------------------
    accelerator = accelerator_for(Accelerator, job)
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    random.seed(loop.seed)
    np.random.seed(loop.seed)
    torch.manual_seed(loop.seed + rank)  # per-process dropout streams; rank 0 = the 1-process run

    # ---- 3. Data: tokenised once, batches re-drawn from (seed, epoch) -------------------------
    train_enc = encode(tokenizer, inputs.train_examples, loop.max_seq_length)
    loader = make_loader(train_enc, loop.train_batch_size, shuffle=True, seed=loop.seed,
                         group_by_length=loop.group_by_length, pad_to_max_length=loop.pad_to_max_length)
    sampler, collate = loader.batch_sampler, loader.collate_fn
    steps_per_epoch = len(sampler)
    total_steps = max(1, math.ceil(loop.num_train_epochs * steps_per_epoch))
    eval_enc = encode(tokenizer, inputs.eval_examples, loop.max_seq_length) if inputs.eval_examples else None
    started = (previous.get("started") if previous else None) or now()
    if accelerator.is_main_process:
        record = running_record(job, started, stage1)
        write_json(out / "run.json", {**previous, **record} if previous else record)

    # ---- 4. Models for this job ------------------------------------------------------------
    student.to(device)
    ctx = StepContext(job.kind, spec.is_regression, stage2=job.stage2, autocast=accelerator.autocast)
    fit_denses, teacher_eval_logits = None, None
    beta_enc, teacher_beta_logits, teacher_logits_seconds = train_enc, None, None
    model: torch.nn.Module = student
    if job.kind == "intermediate":
        assert teacher is not None and inputs.mapping is not None
        fit_denses = make_fit_denses(student.config.hidden_size, teacher.config.hidden_size,
                                     student.config.num_hidden_layers)
        load_fit_denses(job.student, fit_denses)  # a general-distilled student's projections, if it has them
        ctx.teacher, ctx.mapping = teacher.to(device).eval(), inputs.mapping
        model = Stage1Student(student, fit_denses)
        # Pooler and classifier are not reached by the stage-1 loss: freeze them (DDP needs every
        # trainable parameter to get a gradient; Adam would not move them anyway).
        for name, p in student.named_parameters():
            if not name.startswith(student.base_model_prefix + ".") or ".pooler." in name:
                p.requires_grad_(False)
    elif job.kind == "prediction" and teacher is not None:
        t_cache = time.perf_counter()
        own = inputs.teacher_tokenizer  # across tokenizers: the teacher reads the texts itself
        ctx.teacher_logits = cached_teacher_logits(teacher, job, train_enc, inputs.train_file, accelerator,
                                                   teacher_tokenizer=own, examples=inputs.train_examples)
        teacher_beta_logits = ctx.teacher_logits
        if eval_enc is not None:
            teacher_eval_logits = cached_teacher_logits(teacher, job, eval_enc, inputs.eval_file, accelerator,
                                                        "teacher_eval_logits.pt", teacher_tokenizer=own,
                                                        examples=inputs.eval_examples)
        if job.aug_train:
            beta_enc = encode(tokenizer, inputs.x_train.examples, loop.max_seq_length)
            teacher_beta_logits = cached_teacher_logits(teacher, job, beta_enc, inputs.x_train.path, accelerator,
                                                        "teacher_beta_logits.pt", teacher_tokenizer=own,
                                                        examples=inputs.x_train.examples)
        teacher_logits_seconds = time.perf_counter() - t_cache
        teacher = None  # stage 2 needs only the cached logits
    model.train()
    optimizer = make_optimizer(model, loop.learning_rate, loop.weight_decay, device)
    scheduler = make_scheduler(optimizer, job.kind, loop.warmup_proportion, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    trained = raw_model.student if job.kind == "intermediate" else raw_model  # the classifier being trained
    step_loss = STEPS[job.kind]

    # ---- 5. Resume -------------------------------------------------------------------------
    metric = selection_metric(spec, job.best_metric)
    step, epoch, position = 0, 0, 0
    best: dict[str, Any] = {"metric": metric, "value": None, "step": None}
    history: list[dict[str, Any]] = []   # evaluations of this session: {"step", "eval"}
    ckpt = latest_checkpoint(checkpoints_dir) if job.resume else None
    log_lines: int | None = 0
    eval_at_step = False
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
        progress = state["progress"]
        step, epoch, position, best = progress["step"], progress["epoch"], progress["position"], progress["best"]
        if progress.get("last_eval"):
            # Evaluated at this step before the stop (e.g. a pruning hook): not evaluated again.
            history.append(progress["last_eval"])
            eval_at_step = True
        log_lines = progress.get("metrics_lines")  # None in checkpoints of earlier versions
        accelerator.print(f"resuming {out} from {ckpt.name} (step {step}/{total_steps})")
    metrics_path = out / "metrics.jsonl"
    kept = truncate_metrics(metrics_path, lines=log_lines, step=step, eval_at_step=eval_at_step) \
        if accelerator.is_main_process else 0
    log = MetricsLog(metrics_path, enabled=accelerator.is_main_process, lines=kept)
    bar = tqdm(total=samples_in_steps(sampler, total_steps, steps_per_epoch),
               initial=samples_in_steps(sampler, step, steps_per_epoch), unit="ex", unit_scale=True,
               dynamic_ncols=True, disable=not accelerator.is_local_main_process or quiet(), desc=f"{job.kind} {out.name}")
    train_seconds, train_samples = 0.0, 0
    last_eval_step = history[-1]["step"] if history else -1
    last_checkpoint_step = step if ckpt is not None else -1
    batches: list = []

    def checkpoint() -> None:
        nonlocal last_checkpoint_step
        last_checkpoint_step = step
        at_end = bool(batches) and position >= len(batches)   # the next step starts the next epoch
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
                             "position": 0 if at_end else position, "best": best,
                             "total_steps": total_steps, "metrics_lines": log.lines,
                             "last_eval": history[-1] if history and history[-1]["step"] == step else None},
            })
        accelerator.wait_for_everyone()

    def evaluate_and_keep_best() -> dict[str, Any]:
        nonlocal best, last_eval_step
        scores = evaluate(raw_model, eval_enc, spec, job, accelerator, teacher_eval_logits)
        last_eval_step = step
        value = scores.get(metric, float("nan"))
        improved = best["value"] is None or (not math.isnan(value) and value > best["value"])
        if improved:
            best = {"metric": metric, "value": value, "step": step}
            if accelerator.is_main_process:
                save_classifier(trained, tokenizer, out / "best", label_names=spec.class_names)
        log.write({"step": step, "eval": scores, "best": improved})
        history.append({"step": step, "eval": scores})
        accelerator.wait_for_everyone()
        hook = _EVAL_HOOK.get()
        if hook is not None and job.kind == "prediction":
            try:
                hook({"job": job.kind, "out": str(out), "step": step, "epoch": step / steps_per_epoch,
                      "metrics": dict(scores)})
            except BaseException:
                # The caller stops the run (e.g. a pruned trial): leave this step's state on disk
                # so that --resume continues from here, then let the exception through unchanged.
                if last_checkpoint_step != step:
                    checkpoint()
                log.close()
                bar.close()
                raise
        return scores

    # ---- 6. The loop ----------------------------------------------------------------------------
    while step < total_steps:
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        while position < len(batches) and step < total_steps:
            t0 = time.perf_counter()
            rows = batches[position]
            losses = accumulate(model, rows, collate, ctx, step_loss, accelerator, job)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            position += 1

            entry = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0], **losses}
            log.write(entry)
            train_seconds += time.perf_counter() - t0
            train_samples += len(rows)
            bar.update(len(rows))
            if step % 20 == 0 or step == total_steps:
                bar.set_postfix(loss=f"{entry['loss']:.4g}", refresh=False)
            if eval_enc is not None and loop.eval_step and step % loop.eval_step == 0:
                evaluate_and_keep_best()
            if loop.checkpoint_steps and step % loop.checkpoint_steps == 0:
                checkpoint()
            if stop_after_steps is not None and step >= stop_after_steps and step < total_steps:
                log.close()
                bar.close()
                raise TrainingInterrupted(f"stopped after step {step} (stop_after_steps)")
        if position >= len(batches):
            if not (loop.checkpoint_steps and step % loop.checkpoint_steps == 0):
                checkpoint()  # epoch end (unless the step checkpoint just did it)
            epoch, position = epoch + 1, 0
    bar.close()

    # ---- 7. Final evaluation, outputs, β (float32, on the model that will be analysed) -----------
    final_eval = None
    if eval_enc is not None:
        final_eval = evaluate_and_keep_best() if last_eval_step != step else history[-1]["eval"]
    log.close()
    if accelerator.is_main_process:
        final_dir = save_classifier(trained, tokenizer, out / "final", label_names=spec.class_names)
        if fit_denses is not None:
            with atomic_path(Path(final_dir) / "fit_denses.pt") as tmp:
                save_tensors(raw_model.fit_denses.state_dict(), tmp)
        _plot_loss_curves(metrics_path, out / "loss_curves.png", metric)
    accelerator.wait_for_everyone()
    beta: dict[str, Any] = {}
    analysed = job.analyse if (out / "best").is_dir() else "final"
    if job.kind == "prediction" and not spec.is_regression:
        # Over X_train (the task's train split), not an --aug-train file: φ_cnf is judged on X_train.
        measured = raw_model if analysed == "final" else load_classifier(out / "best")[0].to(device)
        student_logits = predict(measured, beta_enc, job, accelerator)  # own forward, no autocast
        beta = beta_statistics(student_logits, teacher_beta_logits, torch.as_tensor(beta_enc.labels),
                               alpha=job.stage2.alpha, temperature=job.stage2.temperature)
        weights = str(next(measured.parameters()).dtype).removeprefix("torch.")
        beta["beta_precision"] = (f"{weights} forward without autocast (also under --mixed-precision), "
                                  "eval mode, teacher and student; float64 loss")
    if accelerator.is_main_process:
        timings = {"started": started, "finished": now(), "wall_seconds": time.time() - t_start,
                   "train_seconds_this_session": train_seconds, "teacher_logits_seconds": teacher_logits_seconds,
                   "train_samples_per_second": train_samples / train_seconds if train_seconds else None}
        write_json(out / "run.json", complete_record(
            job, inputs, stage1=stage1, steps=total_steps, steps_per_epoch=steps_per_epoch, world=world,
            device=device, fit_denses=fit_denses, final_eval=final_eval,
            best=best if eval_enc is not None else None, beta=beta, timings=timings, analysed=analysed))
    accelerator.wait_for_everyone()
    return read_run(out)


def _plot_loss_curves(metrics_path: Path, png: Path, metric: str) -> None:
    from confdistill.reports.run_plots import plot_loss_curves

    plot_loss_curves(metrics_path, png, metric=metric)
