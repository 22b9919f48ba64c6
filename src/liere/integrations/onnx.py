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
* ``dynamic_size=True`` makes the spatial axes (height and width, and frames
  for video) symbolic multiples of the patch size: the patch grid, the
  positions (arange/linspace/meshgrid of the symbolic grid) and the rotation
  are all computed in the graph, so one file serves every image size. Methods
  whose rotation is fixed then keep their cos/sin in the graph instead of
  folding them. Without it the image size is fixed at export time.
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
    dynamic_size: bool = False,
    patch_size: int | tuple[int, ...] | None = None,
    check: bool = True,
    atol: float = 1e-4,
    opset_version: int | None = None,
) -> str:
    """Export ``model`` (put in eval mode) for inputs shaped like ``example``; returns the path.

    The graph has one input ``input`` and one output ``output``. With
    ``dynamic_batch`` the first axis of both is symbolic. With ``dynamic_size``
    every axis after the channels (H, W; T, H, W for video) is a symbolic multiple
    of ``patch_size`` (default: read from ``model.patch_embed``, as liere's and
    timm's ViTs have it); inputs of any such size then run. With ``check`` the
    file is run through ONNX Runtime on ``example`` and must match PyTorch
    within ``atol`` (a ``RuntimeError`` otherwise; skipped when onnxruntime is
    not installed).
    """
    path = os.fspath(path)
    model.eval()
    if callable(getattr(model, "fold_position_basis", None)) and hasattr(getattr(model, "pe", None), "fold_basis") \
            and not model.pe.folded:
        model = copy.deepcopy(model).fold_position_basis()
    dims = {0: torch.export.Dim("batch")} if dynamic_batch else {}
    if dynamic_size:
        dims.update(_spatial_dims(model, example, patch_size))
    dynamic_shapes = (dims,) if dims else None
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


def _spatial_dims(model: nn.Module, example: Tensor, patch_size) -> dict:
    """Axes 2.. of the input as symbolic multiples of the patch size: {axis: patch * Dim}."""
    spatial = example.ndim - 2
    if patch_size is None:
        patch_size = getattr(getattr(model, "patch_embed", None), "patch_size", None)
        if patch_size is None:
            raise ValueError("export: dynamic_size needs patch_size (the model has no patch_embed.patch_size)")
    patch = (patch_size,) * spatial if isinstance(patch_size, int) else tuple(int(p) for p in patch_size)
    if len(patch) != spatial:
        raise ValueError(f"export: patch_size {patch} does not match the {spatial} spatial axes of the example")
    names = ("height", "width") if spatial == 2 else ("frames", "height", "width")[-spatial:]
    dims = {}
    for axis, (p, name) in enumerate(zip(patch, names), start=2):
        if example.shape[axis] % p:
            raise ValueError(f"export: example size {example.shape[axis]} on axis {axis} is not a multiple of {p}")
        grid = torch.export.Dim(f"{name}_patches", min=1, max=4096)
        dims[axis] = grid * p if p > 1 else grid
    return dims


def run_onnxruntime(path: str | os.PathLike, x: Tensor):
    """Run an exported file on the CPU with ONNX Runtime; returns the output as a numpy array."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})[0]

