"""ONNX export of an eval-mode ViT with every method, run by ONNX Runtime.

The recommended path is ``liere.integrations.onnx.export`` (torch.onnx.export
with ``dynamo=True``, batch axis dynamic, and with ``dynamic_size=True`` the
image size too). The legacy TorchScript exporter
(``dynamo=False``) handles every method except LieRE: with b >= 5 its
exponential is an autograd.Function (exported as an opaque PythonOp), and with
b = 4 ONNX Runtime rejects the graph it writes. Those cases need ``dynamo=True``.
"""

import warnings

import pytest
import torch

from liere.models import build_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from liere.integrations.onnx import export, run_onnxruntime  # noqa: E402

from ._helpers import ALL, ROTARY  # noqa: E402

COMPLEX = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}


def vit(method: str, **options):
    torch.manual_seed(0)
    if method in ROTARY:
        options.setdefault("block_size", ROTARY[method])
    name = "liere" if method == "liere_ss" else method
    return build_model("vit", "micro", name, input_shape=(16, 16), patch_size=4, num_classes=3, depth=2,
                       num_registers=1, **options).eval()


def element_types(model) -> set[int]:
    graph = model.graph
    values = [*graph.value_info, *graph.input, *graph.output]
    return {v.type.tensor_type.elem_type for v in values} | {t.data_type for t in graph.initializer}


@pytest.mark.parametrize("name", ALL)
def test_dynamic_size_export_matches_pytorch_at_sizes_it_never_saw(name, tmp_path):
    """Exported at batch 2 and 16x16 with dynamic batch and size: ONNX Runtime matches PyTorch at three other
    batch sizes and image sizes (positions and rotations are computed in the graph)."""
    model = vit(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export(model, torch.randn(2, 3, 16, 16), tmp_path / f"{name}.onnx", dynamic_size=True)
    proto = onnx.load(path)
    assert not element_types(proto) & COMPLEX
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3])), dims
    for batch, h, w in [(1, 8, 8), (5, 24, 12), (2, 32, 40)]:
        x = torch.randn(batch, 3, h, w)
        with torch.no_grad():
            ref = model(x)
        got = torch.from_numpy(run_onnxruntime(path, x))
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


def test_dynamic_size_export_of_a_video_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("vit", "micro", "liere", input_shape=(4, 8, 8), patch_size=(2, 4, 4), num_classes=3,
                        depth=1, block_size=4).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export(model, torch.randn(2, 3, 4, 8, 8), tmp_path / "video.onnx", dynamic_size=True)
    for shape in [(2, 3, 6, 8, 12), (1, 3, 2, 16, 8)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = model(x)
        torch.testing.assert_close(torch.from_numpy(run_onnxruntime(path, x)), ref, atol=1e-4, rtol=0)


def test_dynamic_size_needs_a_patch_size(tmp_path):
    with pytest.raises(ValueError, match="patch_size"):
        export(torch.nn.Identity(), torch.randn(1, 3, 8, 8), tmp_path / "x.onnx", dynamic_size=True)
    with pytest.raises(ValueError, match="multiple"):
        export(vit("none"), torch.randn(1, 3, 18, 16), tmp_path / "x.onnx", dynamic_size=True)


def test_fixed_rotations_are_folded_learned_ones_computed_in_graph(tmp_path):
    """Axial RoPE depends on buffers only: its cos/sin fold into constants. LieRE's generators are weights,
    so its rotation stays in the graph (matrix products and Where, real types only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = onnx.load(export(vit("rope_axial"), torch.randn(1, 3, 16, 16), tmp_path / "a.onnx"))
        learned = onnx.load(export(vit("liere_ss"), torch.randn(1, 3, 16, 16), tmp_path / "b.onnx"))
    fixed_ops = {n.op_type for n in fixed.graph.node}
    learned_ops = {n.op_type for n in learned.graph.node}
    assert not fixed_ops & {"Sin", "Cos"}
    assert "Where" in learned_ops and "MatMul" in learned_ops


@pytest.mark.parametrize("name", ["comrope_ap", "comrope_ld", "rope_mixed", "rope_axial", "spherical", "absolute", "none"])
def test_legacy_torchscript_exporter_for_methods_it_supports(name, tmp_path):
    model = vit(name)
    x = torch.randn(2, 3, 16, 16)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=False, input_names=["input"], output_names=["output"])
        ref = model(x)
    torch.testing.assert_close(torch.from_numpy(run_onnxruntime(path, x)), ref, atol=1e-4, rtol=0)
