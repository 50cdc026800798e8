"""confdistill.prediction."""

# Softmax output file format (numpy/pyarrow only, never torch).
from confdistill.prediction.softmax_file import (
    SoftmaxFormatWarning,
    SoftmaxOutputs,
    outputs_from_arrays,
    read_softmax,
    sidecar_path,
    write_softmax,
)

__all__ = [
    "SoftmaxFormatWarning",
    "SoftmaxOutputs",
    "outputs_from_arrays",
    "read_softmax",
    "sidecar_path",
    "write_softmax",
]
