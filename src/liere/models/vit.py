"""Vision Transformer over 2-D images or 3-D videos/volumes, with any position encoding.

    x (B, C, *S) --patch/tubelet embedding (conv, stride = kernel = patch)--> tokens (B, N, dim), N = prod(S / patch)
      --prepend CLS + registers (P prefix tokens)--> (B, P + N, dim)
      --pe.embed(x, grid)--> depth x Block(x, R) --> LN --> pool (CLS or mean of patches) --> Linear,
    R = pe.rotation(positions(grid))

Every encoding has both hooks: ``embed`` is the identity unless the encoding is
additive (``absolute`` adds its table), ``rotation`` is None unless it is rotary.
The patch positions come from ``liere.positions.grid`` under
the model's ``convention`` (default: the method's own, ``pe.default_convention``),
relative to the training grid, so a model trained on 32x32 images evaluates on
48x48 or 64x64 ones: the grid grows and the positions follow the convention.
``R = pe.rotation(positions)`` is computed ONCE per forward pass and shared by all
blocks; layers with their own generators (``share_layers=False``) get them from
the one batched rotation through ``layer=i``. Prefix tokens get the identity rotation.

``position_scaling`` ("convention", "extend", "rescale"; see ``liere.positions``) can be
set at evaluation time to place other grids by another rule than the convention's.
``position_jitter`` sigma > 0 perturbs the patch coordinates while training, as
ComRoPE does: each coordinate moves by clamp(N(0, (sigma/2)^2), -1/2, 1/2) patch
spacings, one draw per forward pass shared by the batch (the time axis of videos is
left alone).

Positions of the training grid live in a (non-persistent) buffer; other grids are
made once and kept in a small dict, so nothing is rebuilt step after step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

import liere
from liere.encodings import canonical_name, method_class
from liere.positions import grid as position_grid

from .attention import Block, init_weights

__all__ = ["ViT", "PatchEmbed"]


def _tuple(value, n: int, name: str) -> tuple[int, ...]:
    t = (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)
    if len(t) != n or min(t) < 1:
        raise ValueError(f"{name}: expected {n} positive sizes, got {value!r}")
    return t


class PatchEmbed(nn.Module):
    """Non-overlapping patches (2-D) or tubelets (3-D) projected to ``dim`` by one strided convolution."""

    def __init__(self, patch_size: Sequence[int], in_chans: int, dim: int):
        super().__init__()
        self.patch_size = tuple(patch_size)
        conv = {2: nn.Conv2d, 3: nn.Conv3d}.get(len(self.patch_size))
        if conv is None:
            raise ValueError(f"patch_size: expected 2 (image) or 3 (video/volume) sizes, got {self.patch_size}")
        self.proj = conv(in_chans, dim, kernel_size=self.patch_size, stride=self.patch_size)

    def grid_shape(self, spatial: Sequence[int]) -> tuple[int, ...]:
        spatial = tuple(s if isinstance(s, torch.SymInt) else int(s) for s in spatial)  # symbolic under export
        if len(spatial) != len(self.patch_size) or any(s % p for s, p in zip(spatial, self.patch_size)):
            raise ValueError(f"input size {spatial} is not divisible by patch_size={self.patch_size}")
        return tuple(s // p for s, p in zip(spatial, self.patch_size))

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, *S) -> (B, dim, *grid) -> (B, N, dim), row-major like liere.positions.grid.
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """ViT classifier with a pluggable position encoding.

    Args:
        input_shape: training input size, (H, W) for images or (T, H, W) for video/volumes.
        patch_size: int or per-axis sizes (e.g. (2, 16, 16) tubelets).
        method: any ``liere.build`` name (``liere.METHODS``, ``liere.ALIASES``).
        pool: "cls" (a CLS token) or "mean" (mean of the patch tokens).
        num_registers: extra learned prefix tokens (Darcet et al. 2024), dropped before pooling.
        share_layers: one set of generators for all layers (False: one per layer).
        convention: position convention; None uses the method's default.
        position_jitter: ComRoPE's training-time jitter of patch coordinates, in patch spacings (0: off).
        position_scaling: how grids other than the training grid are placed ("convention", "extend",
            "rescale"); an attribute, so it can be changed after training.
        pe_options: further options for ``liere.build`` (theta, init_scale, kind, ...).
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        patch_size: int | Sequence[int] = 4,
        in_chans: int = 3,
        num_classes: int = 10,
        dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        method: str = "liere",
        block_size: int | None = None,
        share_layers: bool = False,
        share_heads: bool = False,
        pool: str = "cls",
        num_registers: int = 0,
        convention: str | None = None,
        drop_path: float = 0.0,
        position_jitter: float = 0.0,
        position_scaling: str = "convention",
        pe_options: dict | None = None,
    ):
        super().__init__()
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) not in (2, 3):
            raise ValueError(f"input_shape: expected (H, W) or (T, H, W), got {input_shape}")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool: expected 'cls' or 'mean', got {pool!r}")
        if dim % num_heads:
            raise ValueError(f"dim: {dim} is not divisible by num_heads={num_heads}")
        if num_registers < 0:
            raise ValueError(f"num_registers: expected >= 0, got {num_registers}")
        if not (isinstance(position_jitter, (int, float)) and 0.0 <= position_jitter < float("inf")):
            raise ValueError(f"position_jitter: expected a finite sigma >= 0 (in patch spacings), got {position_jitter!r}")
        if position_scaling not in liere.positions.SCALINGS:
            raise ValueError(f"position_scaling: expected one of {liere.positions.SCALINGS}, got {position_scaling!r}")
        self.position_jitter, self.position_scaling = float(position_jitter), position_scaling
        self.input_shape, self.pool, self.method = input_shape, pool, canonical_name(method)
        self.patch_embed = PatchEmbed(_tuple(patch_size, len(input_shape), "patch_size"), in_chans, dim)
        self.grid_shape = self.patch_embed.grid_shape(input_shape)
        self.num_prefix_tokens = int(pool == "cls") + num_registers
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.registers = nn.Parameter(torch.zeros(1, num_registers, dim)) if num_registers else None
        pe_options = dict(pe_options or {})
        if "grid_shape" in method_class(self.method).options:  # a table sized for the training grid
            pe_options.setdefault("grid_shape", self.grid_shape)
        self.pe = liere.build(
            self.method, pos_dims=len(input_shape), head_dim=dim // num_heads, num_heads=num_heads,
            block_size=block_size, num_layers=depth, share_layers=share_layers, share_heads=share_heads,
            num_prefix_tokens=self.num_prefix_tokens, **pe_options,
        )
        self.convention = convention or self.pe.default_convention
        if self.convention not in liere.positions.CONVENTIONS:
            raise ValueError(f"convention: expected one of {liere.positions.CONVENTIONS}, got {convention!r}")
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]  # stochastic depth grows linearly
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, layer=i, mlp_ratio=mlp_ratio, drop_path=rates[i]) for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.register_buffer("train_positions", self._make_positions(self.grid_shape), persistent=False)
        self.register_buffer("jitter_scale", self._make_jitter_scale(), persistent=False)
        self._positions: dict[tuple[int, ...], Tensor] = {}
        self.apply(init_weights)
        for token in (self.cls_token, self.registers):
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)

    # ----- positions -------------------------------------------------------------------
    def _make_jitter_scale(self) -> Tensor:
        # Patch spacing per axis, the unit of the jitter; video time (axis 0 of 3) is never jittered.
        spacing = [liere.positions.train_spacing(n, self.convention)[1] for n in self.grid_shape]
        if len(spacing) == 3:
            spacing[0] = 0.0
        return torch.tensor(spacing)

    def init_non_persistent_buffers(self) -> None:
        """Recompute the fixed buffers (training positions, jitter scale, the encoding's) on the model's
        device: a model built on the meta device gets them on ``to_empty()`` (automatically)."""
        device = self.head.weight.device
        with torch.device("cpu"):
            positions, scale = self._make_positions(self.grid_shape), self._make_jitter_scale()
        self._buffers["train_positions"] = positions.to(device)
        self._buffers["jitter_scale"] = scale.to(device)
        self._positions.clear()
        self.pe.init_non_persistent_buffers()

    def _apply(self, fn, *args, **kwargs):
        was_meta = self.train_positions.device.type == "meta"
        out = super()._apply(fn, *args, **kwargs)
        self._positions.clear()
        if was_meta and self.train_positions.device.type != "meta":
            self.init_non_persistent_buffers()
        return out

    def _make_positions(self, grid_shape: tuple[int, ...], device=None, scaling: str = "convention") -> Tensor:
        return position_grid(grid_shape, self.convention, train_shape=self.grid_shape, scaling=scaling,
                             device=device)

    def positions(self, grid_shape: Sequence[int]) -> Tensor:
        """Patch positions (N, d) of a grid under ``position_scaling``, cached per grid shape and scaling."""
        grid_shape = tuple(grid_shape)
        device = self.train_positions.device
        scaling = self.position_scaling
        if not all(isinstance(n, int) for n in grid_shape):
            # A symbolic grid (export with dynamic image size): positions in the graph, no shape guard.
            return self._make_positions(grid_shape, device, scaling)
        if grid_shape == self.grid_shape:
            return self.train_positions
        if torch.compiler.is_compiling():
            # Writing the dict inside a compiled graph is a guarded side effect that costs a second
            # compile per new shape; in-graph the grid is a few cheap ops anyway.
            return self._make_positions(grid_shape, device, scaling)
        pos = self._positions.get((grid_shape, scaling))
        if pos is None or pos.device != device:
            pos = self._make_positions(grid_shape, device, scaling)
            self._positions[(grid_shape, scaling)] = pos
        return pos

    def _jittered(self, positions: Tensor) -> Tensor:
        noise = (torch.randn_like(positions) * (self.position_jitter / 2)).clamp(-0.5, 0.5)
        return positions + noise * self.jitter_scale.to(positions.dtype)

    # ----- forward ---------------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """Pooled features (B, dim) of images (B, C, H, W) or clips/volumes (B, C, T, H, W)."""
        if x.ndim != 2 + len(self.input_shape):
            raise ValueError(f"x: expected (B, C, {', '.join('THW'[-len(self.input_shape):])}), got {tuple(x.shape)}")
        grid_shape = self.patch_embed.grid_shape(x.shape[2:])
        x = self.patch_embed(x)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.registers) if t is not None]
        if prefix:
            x = torch.cat((*prefix, x), 1)
        x = self.pe.embed(x, grid_shape)
        positions = self.positions(grid_shape)
        if self.training and self.position_jitter > 0:
            positions = self._jittered(positions)
        rotation = self.pe.rotation(positions)  # once, for every layer
        for block in self.blocks:
            x = block(x, rotation)
        x = self.norm(x)
        return x[:, 0] if self.pool == "cls" else x[:, self.num_prefix_tokens :].mean(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def no_weight_decay(self) -> set[str]:
        """Parameters weight decay leaves alone (timm convention): the encoding's, the CLS and register tokens."""
        tokens = {name for name in ("cls_token", "registers") if getattr(self, name) is not None}
        return tokens | {f"pe.{name}" for name in self.pe.no_weight_decay()}

    @torch.no_grad()
    def fold_position_basis(self) -> "ViT":
        """Fold STRING's orthogonal basis P into the query and key projections, for inference.

        R(p) = P R0(p) P^T, so <R(p) q, R(p') k> = <R0(p) P^T q, R0(p') P^T k>: with W_q <- P^T W_q and
        W_k <- P^T W_k per head (and layer), the encoding drops P and becomes plain RoPE-Mixed, and the
        model's outputs are unchanged. Returns the model.
        """
        fold = getattr(self.pe, "fold_basis", None)
        if fold is None:
            raise ValueError(f"fold_position_basis: method {self.method!r} has no position basis to fold "
                             f"(string and string_circulant have one)")
        basis = fold()  # (Lb, Hb, r, r)
        for i, block in enumerate(self.blocks):
            attn = block.attn
            heads, head_dim, dim = attn.num_heads, attn.head_dim, attn.num_heads * attn.head_dim
            p = basis[i if basis.shape[0] > 1 else 0].to(attn.qkv.weight.dtype)
            p = p.expand(heads, *p.shape[1:])
            r = p.shape[-1]
            for part in (0, 1):  # q, k; v is left alone
                rows = slice(part * dim, (part + 1) * dim)
                w = attn.qkv.weight[rows].view(heads, head_dim, -1)
                w[:, :r] = torch.einsum("hji,hjc->hic", p, w[:, :r])
                if attn.qkv.bias is not None:
                    b = attn.qkv.bias[rows].view(heads, head_dim)
                    b[:, :r] = torch.einsum("hji,hj->hi", p, b[:, :r])
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (f"input_shape={self.input_shape}, grid_shape={self.grid_shape}, pool={self.pool!r}, "
                f"num_prefix_tokens={self.num_prefix_tokens}, convention={self.convention!r}, "
                f"position_scaling={self.position_scaling!r}, position_jitter={self.position_jitter}")

