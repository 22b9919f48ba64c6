"""What the rest of the package asks of the torch version it runs on, answered once."""

from __future__ import annotations

import torch

__all__ = ["tracing", "exporting"]


def tracing() -> bool:
    """True inside ``torch.compile``, ``torch.jit`` tracing or ONNX export: no host syncs, no Python-side state."""
    return bool(torch.compiler.is_compiling() or exporting())


def exporting() -> bool:
    """True inside ``torch.jit`` tracing, ONNX export or ``torch.export``: graphs that must hold only real,
    static-shaped ops (``torch.compile`` alone also handles complex tensors and custom operators)."""
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())
