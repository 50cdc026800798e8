"""The training loop: TinyBERT stage 1, stage 2, and teacher fine-tuning, in one readable function.

Read :func:`_train` top to bottom: it prepares data and models, then runs one loop whose loss
depends on the job (``"intermediate"``: attention-score + hidden-state MSE; ``"prediction"``: soft
CE to cached teacher logits; ``"finetune"``: hard-label CE), with evaluation, best checkpoint,
periodic checkpoints, and a resumable position in the data.

Layout of ``OUT`` (one job)::

    OUT/run.json          settings, versions, data SHA-256s, timings, eval results, β (stage 2)
    OUT/metrics.jsonl     one line per step ({"step", "loss", …}) and per evaluation ({"eval": …})
    OUT/loss_curves.png   the loss (and eval metric) curves
    OUT/final/            the model after the last step (Hugging Face format; stage 1 adds fit_denses.pt)
    OUT/best/             stage 2 / fine-tuning: the evaluation-best model by the task's metric
    OUT/checkpoints/      step-XXXXXXXX/state.pt: weights, optimiser, scheduler, RNG, data position
    OUT/teacher_logits.pt stage 2: teacher logits over the train split, computed once
    OUT/teacher_eval_logits.pt  stage 2: teacher logits over the evaluation split (for σ at each eval)
    OUT/teacher_beta_logits.pt  stage 2 with --aug-train: teacher logits over the task's own train split (β)

``--stage both`` runs stage 1 in ``OUT/intermediate/`` (the layout above) and then stage 2 in
``OUT`` itself with ``OUT/intermediate/final`` as its student.

Every stage-2 evaluation also measures ``sigma`` (σ of the teacher–student confidence gap over the
evaluation rows both classify correctly, as :func:`confdistill.properties.analyze_pair` defines it)
and ``n_both``, and calls the callback installed with :func:`evaluation_hook` (e.g. a tuner that
prunes poor trials by raising; the run's state is checkpointed first, so ``--resume`` continues it).

Data: a GLUE task or ``task="custom"`` with ``columns`` (``DATA_DIR/<split>.{csv,tsv,jsonl}``,
:func:`confdistill.data.load_examples`). β and ``n_train`` are always measured over the task's own
train split (X_train, on which φ_cnf is judged), also when training on an ``--aug-train`` file.

Data parallelism (``accelerate launch --num_processes P``): every process builds the same global
batch (same seed → same order) and takes a contiguous slice of its rows; each process's loss is
its rows' sum divided by the *global* row count, times P, so that DDP's gradient average equals the
single-process gradient — the only difference is float summation order.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
import os
import platform
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from confdistill.distillation.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from confdistill.distillation.config import RESUME_MUTABLE, DistillConfig, FinetuneConfig
from confdistill.distillation.losses import (
    beta_statistics,
    hard_label_loss,
    intermediate_loss,
    make_fit_denses,
    prediction_loss,
)
from confdistill.distillation.run_files import (
    MetricsLog,
    claim_run_dir,
    launch_rank,
    load_cached_logits,
    read_run,
    refuse_existing_run,
    save_cached_logits,
    truncate_metrics,
)
from confdistill.errors import InputError
from confdistill.folders import clear_directory
from confdistill.io import atomic_path, save_tensors, sha256_file, write_json

JOBS = ("intermediate", "prediction", "finetune")


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
    all. Nested blocks: the innermost callback applies. Works through any code path (a
    :class:`contextvars.ContextVar`), e.g. ``with evaluation_hook(cb): execute(steps, ...)``.
    """
    token = _EVAL_HOOK.set(callback)
    try:
        yield
    finally:
        _EVAL_HOOK.reset(token)


@dataclass
class _Job:
    """One training stage: which loss, which models, where to write, and its hyper-parameters."""

    kind: str                      # "intermediate" | "prediction" | "finetune"
    out: Path
    student: str                   # the model being trained
    teacher: str | None
    task: str
    data_dir: str
    aug_train: str | None
    learning_rate: float
    epochs: float
    batch_size: int
    eval_batch_size: int
    max_seq_length: int
    warmup_proportion: float
    weight_decay: float
    seed: int
    eval_step: int | None
    checkpoint_steps: int | None
    temperature: float = 1.0
    alpha: float = 0.0
    lambda_conf: float = 0.0
    eval_split: str | None = None
    group_by_length: bool = True
    resume: bool = False
    cpu: bool = False
    layer_mapping: str = "uniform"
    columns: dict[str, Any] | None = None   # custom data: TableColumns as plain data
    settings: dict[str, Any] = field(default_factory=dict)   # the user's config, stored in run.json
    clear_dir: Path | None = None   # --overwrite: emptied once the inputs are validated (not recorded)


#: _Job fields added after runs were recorded: left out of the resume record at their default, so
#: that a run recorded before they existed can still be resumed.
_RECORD_DEFAULTS: dict[str, Any] = {"layer_mapping": "uniform", "columns": None}


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------

def distill(config: DistillConfig, *, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Run TinyBERT task distillation as configured; returns the contents of ``OUT/run.json``.

    stop_after_steps: testing aid, stop (raise :class:`TrainingInterrupted`) after this global step.
    """
    config.validate()
    out = Path(config.out)
    with claim_run_dir(out, resume=config.resume, overwrite=config.overwrite):
        return _distill(config, out, stop_after_steps)


def _distill(config: DistillConfig, out: Path, stop_after_steps: int | None) -> dict[str, Any]:
    settings = config.to_dict()
    common = dict(
        teacher=config.teacher, task=config.task, data_dir=config.data_dir, aug_train=config.aug_train,
        batch_size=config.train_batch_size, eval_batch_size=config.eval_batch_size,
        max_seq_length=config.max_seq_length, warmup_proportion=config.warmup_proportion,
        weight_decay=config.weight_decay, seed=config.seed, eval_step=config.eval_step,
        checkpoint_steps=config.checkpoint_steps, temperature=config.temperature, alpha=config.alpha,
        lambda_conf=config.lambda_conf, eval_split=config.eval_split, group_by_length=config.group_by_length,
        resume=config.resume, cpu=config.cpu, settings=settings, layer_mapping=config.layer_mapping,
        columns=_plain_columns(config.columns),
    )
    clear = out if config.overwrite else None
    if config.stage == "intermediate":
        return _train(_Job("intermediate", out, config.student, learning_rate=config.learning_rate,
                           epochs=config.num_train_epochs, clear_dir=clear, **common), stop_after_steps)
    if config.stage == "prediction":
        return _train(_Job("prediction", out, config.student, learning_rate=config.learning_rate,
                           epochs=config.num_train_epochs, clear_dir=clear, **common), stop_after_steps)
    # both: stage 1 in OUT/intermediate, then stage 2 in OUT from its final model. --overwrite
    # empties all of OUT once stage 1's inputs are validated.
    if not config.resume and not config.overwrite:
        refuse_existing_run(out)
    stage1_out = out / "intermediate"
    stage1_done = not config.overwrite and read_run(stage1_out).get("status") == "complete"
    if not stage1_done:
        _train(_Job("intermediate", stage1_out, config.student, learning_rate=config.intermediate_lr,
                    epochs=config.intermediate_epochs, clear_dir=clear, **common), stop_after_steps)
    # The refusal above covered OUT; stage 2 continues whatever of its own run is there.
    result = _train(_Job("prediction", out, str(stage1_out / "final"), learning_rate=config.prediction_lr,
                         epochs=config.prediction_epochs, **{**common, "resume": True}),
                    stop_after_steps, stage1=read_run(stage1_out))
    return result


def finetune(config: FinetuneConfig, *, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Fine-tune a classifier on a task with the hard-label loss (the teacher's training); returns run.json."""
    config.validate()
    out = Path(config.out)
    job = _Job(
        "finetune", Path(config.out), config.model, None, config.task, config.data_dir, config.aug_train,
        config.learning_rate, config.num_train_epochs, config.train_batch_size, config.eval_batch_size,
        config.max_seq_length, config.warmup_proportion, config.weight_decay, config.seed, config.eval_step,
        config.checkpoint_steps, eval_split=config.eval_split, group_by_length=config.group_by_length,
        resume=config.resume, cpu=config.cpu, settings=config.to_dict(), columns=_plain_columns(config.columns),
        clear_dir=out if config.overwrite else None,
    )
    with claim_run_dir(out, resume=config.resume, overwrite=config.overwrite):
        return _train(job, stop_after_steps)


def _plain_columns(columns: dict[str, Any] | None) -> dict[str, Any] | None:
    """Custom data's columns in one canonical plain form (JSON round trip equal: compared on --resume)."""
    if columns is None:
        return None
    from confdistill.data.tabular import TableColumns

    return TableColumns.from_mapping(columns).to_dict()


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

def _train(job: _Job, stop_after_steps: int | None = None, stage1: dict | None = None) -> dict[str, Any]:
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from confdistill.data import TableColumns, encode, load_examples, make_loader, read_glue_file, read_table
    from confdistill.distillation.mapping import check_compatible
    from confdistill.models.loading import check_same_vocab, load_classifier, save_classifier

    t_start = time.time()
    # ---- 1. Validate everything the user can get wrong, before writing anything -------------
    columns = TableColumns.from_mapping(job.columns) if job.columns is not None else None
    # X_train, the task's own train split: β and n_train are measured on it (φ_cnf is judged on it),
    # and for custom data it fixes the class order of every split.
    x_train = load_examples(job.task, job.data_dir, "train", columns=columns)
    spec = x_train.task
    if columns is not None and not spec.is_regression:
        columns = dataclasses.replace(columns, label_names=spec.label_names)
    num_labels = 1 if spec.is_regression else len(spec.label_names)
    if job.aug_train:
        train_file = Path(job.aug_train)
        if not train_file.is_file():
            raise InputError("--aug-train file does not exist", path=train_file)
        train_examples = (read_table(train_file, columns)[0] if columns is not None
                          else read_glue_file(job.task, train_file))
    else:
        train_file, train_examples = x_train.path, x_train.examples
    eval_file = None
    eval_examples: list = []
    if job.kind != "intermediate":
        eval_data = load_examples(job.task, job.data_dir, job.eval_split or "dev", columns=columns)
        eval_file, eval_examples = eval_data.path, eval_data.examples
    for name, path in (("--student" if job.kind != "finetune" else "--model", job.student),
                       ("--teacher", job.teacher)):
        if path is not None and not Path(path).is_dir():
            raise InputError(f"{name}: model directory does not exist", path=path)
    student, tokenizer = load_classifier(job.student, num_labels=num_labels)
    teacher = None
    mapping: list[int] | None = None
    if job.teacher is not None:
        teacher, teacher_tokenizer = load_classifier(job.teacher, num_labels=num_labels)
        check_same_vocab(teacher_tokenizer, tokenizer, job.teacher, job.student)
        if job.kind == "intermediate":
            mapping = check_compatible(student.config, teacher.config, job.layer_mapping)

    out = job.out
    checkpoints_dir = out / "checkpoints"
    if job.clear_dir is not None and launch_rank() == 0:
        clear_directory(job.clear_dir)  # --overwrite: only now that the inputs are known to be good
    previous = read_run(out)
    if not job.resume:
        refuse_existing_run(out)
    elif previous.get("status") == "complete":
        return previous
    elif previous:
        _check_same_settings(previous.get("job", {}), _job_record(job), out)

    # ---- 2. Devices, seeds, threads -----------------------------------------------------------
    accelerator = Accelerator(cpu=job.cpu)
    rank, world = accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    if device.type == "cpu" and world > 1 and "OMP_NUM_THREADS" not in os.environ:
        # The cores are shared by the local processes: oversubscribed OpenMP threads spin and are
        # many times slower. (One process keeps torch's default: one thread per physical core.)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, accelerator.num_processes)))
    random.seed(job.seed)
    np.random.seed(job.seed)
    torch.manual_seed(job.seed + rank)  # per-process dropout streams; rank 0 = the 1-process run

    # ---- 3. Data: tokenised once, batches re-drawn from (seed, epoch) -------------------------
    train_enc = encode(tokenizer, train_examples, job.max_seq_length)
    loader = make_loader(train_enc, job.batch_size, shuffle=True, seed=job.seed, group_by_length=job.group_by_length)
    sampler, collate = loader.batch_sampler, loader.collate_fn
    steps_per_epoch = len(sampler)
    total_steps = max(1, math.ceil(job.epochs * steps_per_epoch))
    eval_enc = encode(tokenizer, eval_examples, job.max_seq_length) if eval_examples else None
    n_train = len(x_train.examples)

    started = (previous.get("started") if previous else None) or _now()
    if accelerator.is_main_process:
        record = {"status": "running", "job": _job_record(job), "settings": job.settings,
                  "started": started, **({"intermediate": _stage_summary(stage1)} if stage1 else {})}
        write_json(out / "run.json", {**previous, **record} if previous else record)

    # ---- 4. Models for this job ------------------------------------------------------------
    student.to(device)
    fit_denses = None
    teacher_logits: torch.Tensor | None = None
    teacher_eval_logits: torch.Tensor | None = None   # (n_eval, k): σ at every evaluation
    beta_enc, teacher_beta_logits = train_enc, None    # X_train and the teacher's logits on it (β)
    teacher_logits_seconds = None
    if job.kind == "intermediate":
        assert teacher is not None and mapping is not None
        fit_denses = make_fit_denses(student.config.hidden_size, teacher.config.hidden_size,
                                     student.config.num_hidden_layers)
        teacher.to(device).eval()
        model: nn.Module = Stage1Student(student, fit_denses)
        # Pooler and classifier are not reached by the stage-1 loss: freeze them (DDP needs every
        # trainable parameter to get a gradient; Adam would not move them anyway).
        for name, p in student.named_parameters():
            if not name.startswith(student.base_model_prefix + ".") or ".pooler." in name:
                p.requires_grad_(False)
    elif job.kind == "prediction":
        assert teacher is not None
        t_cache = time.perf_counter()
        teacher_logits = _cached_teacher_logits(teacher, job, train_enc, train_file, accelerator)
        teacher_beta_logits = teacher_logits
        if not spec.is_regression:
            if eval_enc is not None:
                teacher_eval_logits = _cached_teacher_logits(teacher, job, eval_enc, eval_file, accelerator,
                                                             "teacher_eval_logits.pt")
            if job.aug_train:
                beta_enc = encode(tokenizer, x_train.examples, job.max_seq_length)
                teacher_beta_logits = _cached_teacher_logits(teacher, job, beta_enc, x_train.path, accelerator,
                                                             "teacher_beta_logits.pt")
        teacher_logits_seconds = time.perf_counter() - t_cache
        del teacher  # stage 2 needs only the cached logits
        teacher = None
        model = student
    else:
        model = student
    model.train()

    optimizer = make_optimizer(model, job.learning_rate, job.weight_decay, device)
    scheduler = _make_scheduler(optimizer, job, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    trained = raw_model.student if job.kind == "intermediate" else raw_model  # the classifier being trained

    # ---- 5. Resume -------------------------------------------------------------------------
    step, epoch, position = 0, 0, 0
    best: dict[str, Any] = {"metric": spec.metric, "value": None, "step": None}
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
        step, epoch, position = state["progress"]["step"], state["progress"]["epoch"], state["progress"]["position"]
        best = state["progress"]["best"]
        if state["progress"].get("last_eval"):
            # Evaluated at this step before the stop (e.g. a pruning hook): not evaluated again.
            history.append(state["progress"]["last_eval"])
            eval_at_step = True
        log_lines = state["progress"].get("metrics_lines")  # None in checkpoints of earlier versions
        accelerator.print(f"resuming {out} from {ckpt.name} (step {step}/{total_steps})")
    metrics_path = out / "metrics.jsonl"
    kept = 0
    if accelerator.is_main_process:
        kept = truncate_metrics(metrics_path, lines=log_lines, step=step, eval_at_step=eval_at_step)

    # ---- 6. The loop ----------------------------------------------------------------------------
    log = MetricsLog(metrics_path, enabled=accelerator.is_main_process, lines=kept)
    bar = tqdm(total=_samples_in_steps(sampler, total_steps, steps_per_epoch),
               initial=_samples_in_steps(sampler, step, steps_per_epoch), unit="ex", unit_scale=True,
               dynamic_ncols=True, disable=not accelerator.is_local_main_process, desc=f"{job.kind} {out.name}")
    train_seconds, train_samples = 0.0, 0
    last_eval_step = history[-1]["step"] if history else -1
    last_checkpoint_step = step if ckpt is not None else -1
    batches: list = []

    def evaluate_and_keep_best() -> dict[str, Any]:
        nonlocal best, last_eval_step
        scores = _evaluate(raw_model, eval_enc, spec, job, accelerator, teacher_eval_logits)
        last_eval_step = step
        value = scores.get(spec.metric, float("nan"))
        improved = best["value"] is None or (not math.isnan(value) and value > best["value"])
        if improved:
            best = {"metric": spec.metric, "value": value, "step": step}
            if accelerator.is_main_process:
                save_classifier(trained, tokenizer, out / "best")
        log.write({"step": step, "eval": scores, "best": improved})
        history.append({"step": step, "eval": scores})
        accelerator.wait_for_everyone()
        hook = _EVAL_HOOK.get()
        if hook is not None and job.kind == "prediction":
            info = {"job": job.kind, "out": str(out), "step": step, "epoch": step / steps_per_epoch,
                    "metrics": dict(scores)}
            try:
                hook(info)
            except BaseException:
                # The caller stops the run (e.g. a pruned trial): leave this step's state on disk
                # so that --resume continues from here, then let the exception through unchanged.
                if last_checkpoint_step != step:
                    at_end = bool(batches) and position >= len(batches)
                    checkpoint(epoch + 1 if at_end else epoch, 0 if at_end else position)
                log.close()
                bar.close()
                raise
        return scores

    def checkpoint(next_epoch: int, next_position: int) -> None:
        nonlocal last_checkpoint_step
        last_checkpoint_step = step
        states = [rng_state()]
        if world > 1:
            from accelerate.utils import gather_object
            states = gather_object([rng_state()])
        if accelerator.is_main_process:
            log.flush(durable=True)
            save_checkpoint(checkpoints_dir, step, {
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": states,
                "progress": {"step": step, "epoch": next_epoch, "position": next_position, "best": best,
                             "total_steps": total_steps, "metrics_lines": log.lines,
                             "last_eval": history[-1] if history and history[-1]["step"] == step else None},
            })
        accelerator.wait_for_everyone()

    is_regression = spec.is_regression
    while step < total_steps:
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        while position < len(batches) and step < total_steps:
            t0 = time.perf_counter()
            rows = batches[position]
            batch = _local_slice(collate(rows), rank, world, trim=job.kind != "intermediate")
            n_global = len(rows)
            weight = batch.pop("_weight")
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
            scale = world * weight  # see the module docstring: global mean under DDP averaging

            if job.kind == "intermediate":
                loss, att, rep = stage1_loss(model, teacher, mapping, inputs, n_rows=n_global)
                loss = loss * scale
                parts = {"att_loss": att.detach() * scale, "rep_loss": rep.detach() * scale}
            elif job.kind == "prediction":
                logits = model(**inputs).logits
                t_logits = teacher_logits[batch["index"].cpu()].to(device)
                loss, p = prediction_loss(logits, t_logits, batch["labels"], temperature=job.temperature,
                                          alpha=job.alpha, lambda_conf=job.lambda_conf,
                                          is_regression=is_regression, n_rows=n_global)
                loss = loss * scale
                parts = {f"{k}_loss": v for k, v in p.items()}
            else:
                logits = model(**inputs).logits
                loss = hard_label_loss(logits, batch["labels"], is_regression=is_regression, n_rows=n_global) * scale
                parts = {}

            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            step += 1
            position += 1

            # Logging: the global loss (mean over processes of the scaled local losses).
            lr = scheduler.get_last_lr()[0]
            names = ["loss", *parts]
            values = torch.stack([loss.detach(), *(v.detach() for v in parts.values())]).float()
            if world > 1:  # one collective per step for all logged numbers
                values = accelerator.reduce(values.to(device), "mean")
            entry = {"step": step, "epoch": epoch, "lr": lr, **dict(zip(names, values.tolist(), strict=True))}
            log.write(entry)
            dt = time.perf_counter() - t0
            train_seconds += dt
            train_samples += n_global
            bar.update(n_global)
            if step % 20 == 0 or step == total_steps:
                bar.set_postfix(loss=f"{entry['loss']:.4g}", refresh=False)

            if eval_enc is not None and job.eval_step and step % job.eval_step == 0:
                evaluate_and_keep_best()
            if job.checkpoint_steps and step % job.checkpoint_steps == 0:
                at_end = position >= len(batches)
                checkpoint(epoch + 1 if at_end else epoch, 0 if at_end else position)
            if stop_after_steps is not None and step >= stop_after_steps and step < total_steps:
                log.close()
                bar.close()
                raise TrainingInterrupted(f"stopped after step {step} (stop_after_steps)")
        if position >= len(batches):
            epoch, position = epoch + 1, 0
            if not (job.checkpoint_steps and step % job.checkpoint_steps == 0):
                checkpoint(epoch, position)  # epoch end (unless the step checkpoint just did it)
    bar.close()

    # ---- 7. Final evaluation, outputs, β ---------------------------------------------------------
    final_eval = None
    if eval_enc is not None:
        final_eval = evaluate_and_keep_best() if last_eval_step != step else history[-1]["eval"]
    log.close()
    model.eval()
    beta: dict[str, Any] = {}
    if job.kind == "prediction" and not is_regression:
        # Over X_train (the task's train split), not an --aug-train file: φ_cnf is judged on X_train.
        student_logits = _predict_logits(raw_model, beta_enc, job.eval_batch_size, accelerator)
        beta = beta_statistics(student_logits, teacher_beta_logits, torch.as_tensor(beta_enc.labels),
                               alpha=job.alpha, temperature=job.temperature)
    if accelerator.is_main_process:
        final_dir = save_classifier(trained, tokenizer, out / "final")
        if fit_denses is not None:
            with atomic_path(Path(final_dir) / "fit_denses.pt") as tmp:
                save_tensors(raw_model.fit_denses.state_dict(), tmp)
        _plot_loss_curves(metrics_path, out / "loss_curves.png", spec.metric)
        result = {
            "status": "complete",
            "job": _job_record(job),
            "settings": job.settings,
            "stage": job.kind,
            **({"intermediate": _stage_summary(stage1)} if stage1 else {}),
            "task": spec.name,
            "columns": None if columns is None else columns.to_dict(),
            "label_names": list(spec.label_names),
            "n_train": n_train,
            "n_eval": len(eval_examples),
            "steps": total_steps,
            "steps_per_epoch": steps_per_epoch,
            "world_size": world,
            "device": str(device),
            "layer_mapping": mapping,
            "layer_mapping_strategy": job.layer_mapping,
            "fit_denses": None if job.kind != "intermediate" else (
                "none (equal widths)" if fit_denses is None else f"one Linear per hidden state ({len(fit_denses)})"),
            "final_eval": final_eval,
            "best": best if eval_enc is not None else None,
            "alpha": job.alpha,
            "temperature": job.temperature,
            "lambda_conf": job.lambda_conf,
            **{k: v for k, v in beta.items() if k not in ("alpha", "temperature")},
            "beta_split_file": str(x_train.path) if job.kind == "prediction" else None,
            "data": {"train": {"path": str(train_file), "sha256": sha256_file(train_file),
                               "rows": len(train_examples)},
                     **({"x_train": {"path": str(x_train.path), "sha256": sha256_file(x_train.path),
                                     "rows": n_train}} if job.aug_train else {}),
                     **({"eval": {"path": str(eval_file), "sha256": sha256_file(eval_file),
                                  "rows": len(eval_examples)}} if eval_file else {})},
            "models": {"student": str(job.student), "teacher": job.teacher},
            "outputs": {"final": str(out / "final"), "best": str(out / "best") if eval_enc is not None else None},
            "versions": _versions(),
            "timings": {"started": started,
                        "finished": _now(), "wall_seconds": time.time() - t_start,
                        "train_seconds_this_session": train_seconds,
                        "teacher_logits_seconds": teacher_logits_seconds,
                        "train_samples_per_second": train_samples / train_seconds if train_seconds else None},
        }
        write_json(out / "run.json", result)
    accelerator.wait_for_everyone()
    return read_run(out)


# --------------------------------------------------------------------------------------------
# Pieces of the loop
# --------------------------------------------------------------------------------------------

class Stage1Student(nn.Module):
    """Student + fit_denses as one module (so DDP sees every trainable parameter in one forward).

    forward returns (M attention-score tensors (batch, heads, q, k), M+1 hidden states projected to
    the teacher's width (batch, seq, d_t), embeddings first).
    """

    def __init__(self, student: nn.Module, fit_denses: nn.ModuleList | None) -> None:
        super().__init__()
        self.student = student
        self.fit_denses = fit_denses

    def forward(self, **inputs: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        from confdistill.models.attention_scores import capture_attention_scores

        with capture_attention_scores(self.student) as scores:
            out = self.student.base_model(**inputs, output_hidden_states=True)
        hidden = list(out.hidden_states)
        if self.fit_denses is not None:
            hidden = [f(h) for f, h in zip(self.fit_denses, hidden, strict=True)]
        return [scores[i] for i in range(len(scores))], hidden


def stage1_loss(model: nn.Module, teacher: nn.Module, mapping: list[int], inputs: dict[str, torch.Tensor],
                *, n_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage-1 loss of one batch: (total, attention part, hidden part).

    model: a :class:`Stage1Student` (or its DDP wrapper); teacher: the teacher classifier, run in
    inference mode capturing only the mapped layers; inputs: input_ids / attention_mask /
    token_type_ids of shape (batch, seq).
    """
    from confdistill.models.attention_scores import capture_attention_scores

    with torch.inference_mode(), capture_attention_scores(teacher, [g - 1 for g in mapping[1:]]) as t_scores:
        t_out = teacher.base_model(**inputs, output_hidden_states=True)
    s_scores, s_hidden = model(**inputs)
    return intermediate_loss(s_scores, t_scores, s_hidden, t_out.hidden_states, mapping, None, n_rows=n_rows)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weights, none on biases and LayerNorm (TinyBERT's ``no_decay``)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (β 0.9/0.999, ε 1e-6 as BertAdam), fused kernel where torch has one for the device.

    The fused step is ~5× faster on CPU than the per-tensor loop: the dense update of BERT's 30k-row
    word embeddings is a large share of a small student's step.
    """
    groups = _param_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-6, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-6)


def _make_scheduler(optimizer: torch.optim.Optimizer, job: _Job, total_steps: int) -> Any:
    """Stage 1: constant learning rate (TinyBERT: schedule 'none'); otherwise linear warm-up then decay."""
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup

    if job.kind == "intermediate":
        return get_constant_schedule(optimizer)
    return get_linear_schedule_with_warmup(optimizer, int(job.warmup_proportion * total_steps), total_steps)


def _local_slice(batch: dict[str, torch.Tensor], rank: int, world: int, *, trim: bool) -> dict[str, Any]:
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


@torch.inference_mode()
def _predict_logits(model: nn.Module, encoded: Any, batch_size: int, accelerator: Any) -> torch.Tensor:
    """Logits (n, k) in row order over an encoded split: eval mode, length-sorted dynamic-padded batches.

    Batches are dealt round-robin to the processes and gathered, so every process returns all rows.
    """
    from confdistill.data import make_loader

    was_training = model.training
    model.eval()
    loader = make_loader(encoded, batch_size, shuffle=False, group_by_length=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for i, rows in enumerate(loader.batch_sampler):
        if i % world != rank:
            continue
        batch = loader.collate_fn(rows)
        inputs = {k: batch[k].to(accelerator.device) for k in ("input_ids", "attention_mask", "token_type_ids")}
        logits = model(**inputs).logits.float().cpu()
        parts.append((batch["index"].numpy(), logits.numpy()))
    if world > 1:
        from accelerate.utils import gather_object
        parts = gather_object(parts)
    model.train(was_training)
    n = len(encoded)
    k = parts[0][1].shape[1] if parts else 1
    result = np.zeros((n, k), dtype=np.float32)
    for idx, lg in parts:
        result[idx] = lg
    return torch.from_numpy(result)


def _evaluate(model: nn.Module, encoded: Any, spec: Any, job: _Job, accelerator: Any,
              teacher_logits: torch.Tensor | None = None) -> dict[str, Any]:
    """The task's metrics on the evaluation split (eval mode, no dropout).

    Stage 2 adds ``sigma`` and ``n_both`` (:func:`eval_sigma` against the teacher's cached logits on
    the same split; both None for regression).
    """
    from confdistill.data import compute_metrics

    logits = _predict_logits(model, encoded, job.eval_batch_size, accelerator)
    preds = logits.view(-1).numpy() if spec.is_regression else logits.argmax(-1).numpy()
    scores: dict[str, Any] = compute_metrics(spec, preds, encoded.labels)
    if job.kind == "prediction":
        if spec.is_regression or teacher_logits is None:
            scores.update(sigma=None, n_both=None)
        else:
            scores.update(eval_sigma(teacher_logits.numpy(), logits.numpy(), np.asarray(encoded.labels)))
    return scores


def eval_sigma(teacher_logits: np.ndarray, student_logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """σ of the confidence gap and n_both, exactly as :func:`confdistill.properties.analyze_pair` defines them.

    teacher_logits, student_logits: (n, k) logits of the same rows; labels: (n,) gold class indices.
    Probabilities are the float64 softmax at T = 1 (as ``predict`` writes them); Δ = p0_teacher −
    p0_student for 2 classes, the gold label's probability for more, over the rows both models
    classify correctly; σ is its population standard deviation. Returns ``{"sigma": float | None,
    "n_both": int}`` (σ None when no row is right for both).
    """
    from confdistill.prediction.predict import softmax64
    from confdistill.prediction.softmax_file import SoftmaxOutputs
    from confdistill.properties import analyze_pair

    labels = np.asarray(labels, dtype=np.int64)
    outputs = []
    for z in (teacher_logits, student_logits):
        probs = softmax64(z)
        outputs.append(SoftmaxOutputs(probs=probs, pred=probs.argmax(axis=1), label=labels))
    n_both = int((outputs[0].correct & outputs[1].correct).sum())
    if n_both == 0:
        return {"sigma": None, "n_both": 0}
    result = analyze_pair(outputs[0], outputs[1], n_bootstrap=0, split="eval", worst=0)
    return {"sigma": float(result.sigma), "n_both": int(result.n_both)}


def _cached_teacher_logits(teacher: nn.Module, job: _Job, encoded: Any, data_file: Path,
                           accelerator: Any, name: str = "teacher_logits.pt") -> torch.Tensor:
    """Teacher logits over a split, (n, k) float32 in row order — computed once, kept in ``OUT/name``.

    The cache is keyed by the teacher directory, the data file's SHA-256 and max_seq_length; a
    mismatch recomputes it, and so does a damaged or planted file (read as data only).
    """
    path = job.out / name
    # "train_sha256" names the data file's hash for every split: the key of existing caches is kept.
    key = {"teacher": str(Path(job.teacher).resolve()), "train_sha256": sha256_file(data_file),
           "max_seq_length": job.max_seq_length, "n": len(encoded)}
    cached = load_cached_logits(path, json.dumps(key, sort_keys=True), len(encoded))
    if cached is not None:
        return cached
    teacher.to(accelerator.device)
    logits = _predict_logits(teacher, encoded, job.eval_batch_size, accelerator)
    if accelerator.is_main_process:
        save_cached_logits(path, json.dumps(key, sort_keys=True), logits)
    accelerator.wait_for_everyone()
    return logits


def _samples_in_steps(sampler: Any, steps: int, steps_per_epoch: int) -> int:
    """Examples processed by the first ``steps`` steps (all batches full except each epoch's last)."""
    n = len(sampler.lengths)
    full_epochs, rest = divmod(steps, steps_per_epoch)
    return full_epochs * n + min(rest * sampler.batch_size, n)


def _plot_loss_curves(metrics_path: Path, png: Path, metric: str) -> None:
    """Loss components per step (log scale) and the evaluation metric, to a PNG (atomic)."""
    try:
        from confdistill.reports.plots import plot_loss_curves  # type: ignore[attr-defined]
    except ImportError:
        plot_loss_curves = None
    if plot_loss_curves is not None:
        with contextlib.suppress(TypeError):
            plot_loss_curves(metrics_path, png)
            return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [json.loads(x) for x in metrics_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    steps = [e for e in entries if "loss" in e]
    evals = [e for e in entries if "eval" in e]
    keys = [k for k in ("loss", "att_loss", "rep_loss", "soft_loss", "hard_loss", "conf_loss")
            if any(abs(e.get(k, 0.0)) > 0 for e in steps)]
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 4), squeeze=False)
    ax = axes[0][0]
    for k in keys:
        ax.plot([e["step"] for e in steps], [e[k] for e in steps], label=k, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if keys:
        ax.set_yscale("log")
        ax.legend()
    ax.set_title("training loss")
    if evals:
        ax2 = axes[0][1]
        ax2.plot([e["step"] for e in evals], [e["eval"].get(metric, float("nan")) for e in evals], marker="o")
        ax2.set_xlabel("step")
        ax2.set_ylabel(metric)
        ax2.set_title(f"evaluation {metric}")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# run.json helpers
# --------------------------------------------------------------------------------------------

def _job_record(job: _Job) -> dict[str, Any]:
    """The settings that must be equal for --resume to continue the same run."""
    d = dataclasses.asdict(job)
    d.pop("settings")
    d.pop("clear_dir")
    for k in RESUME_MUTABLE:
        d.pop(k, None)
    for k, default in _RECORD_DEFAULTS.items():
        if d.get(k) == default:
            d.pop(k)
    d["out"] = str(d["out"])
    return d


def _check_same_settings(before: dict[str, Any], now: dict[str, Any], out: Path) -> None:
    diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if diff:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in diff[:4])
        raise InputError(f"--resume with different settings than the run being resumed ({shown}); "
                         "use the original settings or another --out", path=out)


def _stage_summary(run: dict[str, Any] | None) -> dict[str, Any] | None:
    if not run:
        return None
    return {k: run.get(k) for k in ("status", "steps", "layer_mapping", "fit_denses", "outputs", "timings")}


def _versions() -> dict[str, str]:
    import accelerate
    import transformers

    import confdistill

    return {"confdistill": confdistill.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "python": platform.python_version(), "threads": str(torch.get_num_threads())}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
