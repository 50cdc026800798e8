"""confdistill.data: GLUE and users' own data, tokenisation and batching.

``glue`` and ``tabular`` use only the standard library at import; the torch-based batching
names (``encode``, ``make_loader``…) are imported on first use so that ``import confdistill.data``
stays light for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

from confdistill.data.glue import (
    TASKS,
    Example,
    TaskSpec,
    compute_metrics,
    get_task,
    known_task_names,
    load_split,
    read_glue_file,
    resolve_split_file,
)
from confdistill.data.tabular import (
    CUSTOM_TASK,
    SplitData,
    TableColumns,
    add_data_arguments,
    columns_from_args,
    infer_label_names,
    load_examples,
    load_examples_from_args,
    read_table,
    resolve_table_file,
)

_LAZY = {
    "Collator": "batching",
    "EncodedSplit": "batching",
    "LengthGroupedBatchSampler": "batching",
    "encode": "batching",
    "make_loader": "batching",
    "set_loader_epoch": "batching",
    "truncate_seq_pair": "batching",
}

__all__ = [
    "CUSTOM_TASK",
    "TASKS",
    "Example",
    "SplitData",
    "TableColumns",
    "TaskSpec",
    "add_data_arguments",
    "columns_from_args",
    "compute_metrics",
    "get_task",
    "infer_label_names",
    "known_task_names",
    "load_examples",
    "load_examples_from_args",
    "load_split",
    "read_glue_file",
    "read_table",
    "resolve_split_file",
    "resolve_table_file",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'confdistill.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"confdistill.data.{module}"), name)
