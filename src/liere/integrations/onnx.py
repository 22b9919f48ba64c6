"""Export a model with a liere encoding to ONNX, and check it against ONNX Runtime.

>>> from liere.integrations.onnx import export
>>> export(model, torch.randn(1, 3, 32, 32), "vit.onnx")   # eval mode, batch axis dynamic, checked with onnxruntime

Findings for torch 2.13 (recorded in tests/ecosystem/test_onnx.py):

* ``torch.onnx.export(..., dynamo=True)`` (the default in torch 2.13) exports
  every method. The rotation is computed in the graph from real ops only
  (linspace/cos/sin/einsum/matmul; LieRE's scaling and squaring runs its
  static ``MAX_SQUARINGS`` loop with ``Where``), because the library takes its
  traceable path whenever ``torch.onnx.is_in_onnx_export()`` or
  ``torch.compiler.is_compiling()``: no complex tensors (the eager CPU path's
  complex multiply is skipped).
  Constant folding then folds what depends on buffers only (fixed-frequency
  methods' cos/sin tables).
* The legacy TorchScript exporter (``dynamo=False``) works for every method
  but LieRE: with b >= 5 its exponential is a ``torch.autograd.Function`` that
  TorchScript tracing records as an opaque ``PythonOp``, and with b = 4 ONNX
  Runtime rejects the graph it writes. Use ``dynamo=True``.
* Dynamic batch needed one change in the traceable apply path: block
  rotations use a broadcasting ``matmul`` rather than ``einsum``, whose ONNX
  lowering baked the broadcast batch of 1 into a Reshape.
* STRING's basis P = Cayley(S) needs a linear solve, which has no ONNX op.
  ``export`` exports a copy of the model with P folded into the query and
  key projections (``ViT.fold_position_basis``), which is also the cheaper
  graph; the model passed in is left as it is.
* The patch grid, and so the image size, is fixed at export time (the
  positions are Python-side functions of it); the batch axis can be dynamic.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import Tensor, nn

__all__ = ["export", "run_onnxruntime"]


def export(
    model: nn.Module,
    example: Tensor,
    path: str | os.PathLike,
    *,
    dynamic_batch: bool = True,
    check: bool = True,
    atol: float = 1e-4,
    opset_version: int | None = None,
) -> str:
    """Export ``model`` (put in eval mode) for inputs shaped like ``example``; returns the path.

    The graph has one input ``input`` and one output ``output``. With
    ``dynamic_batch`` the first axis of both is symbolic. With ``check`` the
    file is run through ONNX Runtime on ``example`` and must match PyTorch
    within ``atol`` (a ``RuntimeError`` otherwise; skipped when onnxruntime is
    not installed).
    """
    path = os.fspath(path)
    model.eval()
    if callable(getattr(model, "fold_position_basis", None)) and hasattr(getattr(model, "pe", None), "fold_basis") \
            and not model.pe.folded:
        model = copy.deepcopy(model).fold_position_basis()
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    with torch.no_grad():
        expected = model(example)
        program = torch.onnx.export(
            model, (example,), dynamo=True, input_names=["input"], output_names=["output"],
            dynamic_shapes=dynamic_shapes, opset_version=opset_version, external_data=False,
        )
    program.save(path, external_data=False)
    if check:
        try:
            got = run_onnxruntime(path, example)
        except ImportError:
            return path
        err = float((torch.from_numpy(got) - expected.float()).abs().max())
        if not err <= atol:
            raise RuntimeError(f"export: ONNX Runtime output differs from PyTorch by {err:.3g} > atol={atol}")
    return path


def run_onnxruntime(path: str | os.PathLike, x: Tensor):
    """Run an exported file on the CPU with ONNX Runtime; returns the output as a numpy array."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})[0]

