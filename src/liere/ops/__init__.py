"""Numerical kernels: exponentials of skew-symmetric blocks and rotation application."""

from .apply import LAYOUTS, apply_rotation, apply_rotation_qk
from .expm import expm_4x4_scaled, expm_taylor_ss, rotation_2x2, skew_expm

__all__ = ["LAYOUTS", "apply_rotation", "apply_rotation_qk", "expm_4x4_scaled", "expm_taylor_ss", "rotation_2x2", "skew_expm"]
