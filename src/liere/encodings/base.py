"""The one pipeline every rotary method shares.

    positions p (B', N, d) --generators--> G(p) = sum_k p_k A_k --exp--> R(p) --apply--> R q, R k

A method subclass only says what its generators look like:

* ``PlanarEncoding`` subclasses (b = 2) return frequencies ``f`` of shape
  (L, d, Hp, M): A_k = blockdiag_m(f[k, m] J), J = [[0, -1], [1, 0]]; the
  rotation is cos/sin of the angles p . f and no matrix is ever built.
* ``BlockEncoding`` subclasses return skew generator blocks (L, d, Hp, M, b, b)
  and may override ``_blocks_at`` when the structure allows a cheaper G(p).

L is 1 when layers share generators (``num_layers=1`` or ``share_layers``), Hp
is 1 when heads share them. Rotations are computed in float32 with autocast
off, once per call, and reused for q, k and every layer; per-layer generators
come out of one batched call as the leading L axis of the ``Rotation``.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import replace

import torch
from torch import Tensor, nn

from .._compat import tracing
from ..ops.apply import LAYOUTS, apply_rotation_qk
from ..ops import multiples
from ..ops.expm import new_site, skew_expm
from ..pairing import check_pairing, from_interleaved, permutation, to_interleaved
from ..positions import check_positions
from ..rotation import Rotation

__all__ = ["PositionEncoding", "RotaryEncoding", "PlanarEncoding", "BlockEncoding"]

_J = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
_CACHE_SIZE = 8
# Above this many bytes of generators for all layers, the CPU makes each layer's rotation separately
# (BlockEncoding._per_layer_batches): glibc's largest mmap threshold.
_PER_LAYER_BYTES = 32 << 20
# From this block size on, rotations at positions that are multiples of others are made by products
# (BlockEncoding._multiples_plan). Measured at 64 and at 8 (per-layer LieRE-8's exponentials, fwd+bwd, 25.5 ->
# 22.3 ms in one process, stop 27, with a first version that also took near multiples: 26 products on the 8x8
# grid, not today's 15); the closed forms (b <= 4) and b = 5-7 were not, and keep the exponential.
_MULTIPLES_FROM = 8


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def finite_float(name: str, value, *, positive: bool = False, non_negative: bool = False) -> float:
    """A float option checked as positions are: finite (and > 0 or >= 0 where asked), else a ValueError naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if positive and number <= 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    if non_negative and number < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return number


class PositionEncoding(nn.Module):
    """What every encoding offers a model: two hooks, called by every model without asking which kind it is.

    * ``embed(x, grid_shape)``: tokens (B, P + N, C) before the first block; the identity
      unless the encoding is ``additive``.
    * ``rotation(positions)``: the ``Rotation`` every attention block applies to q and k;
      None unless the encoding is ``rotary``.

    The class attributes are the method's facts, read by ``liere.encodings.registry``
    (and through it by ``build``, the CLI and the training config): its ``build``
    ``name`` and ``aliases``, its own ``options`` (keywords beyond the common ones),
    its ``default_block_size`` (None: head_dim) and, when the structure allows only
    one, its ``fixed_block_size``.

    Fixed tensors (frequencies, axis generators, sin-cos tables, prefix positions) are
    non-persistent buffers, recomputable by ``init_non_persistent_buffers()`` (timm's
    convention). A model built on the meta device and moved with ``to_empty()`` gets
    them recomputed automatically, so ``load_state_dict`` completes it;
    ``reset_parameters()`` draws the learned ones afresh (timm's convention), and
    ``build(..., device=, dtype=)`` creates an encoding directly on a device.
    """

    #: Names of the fixed buffers ``_make_buffer`` computes.
    _fixed_names: tuple = ()

    def __init_subclass__(cls, **kwargs):
        # Remember each instance's constructor arguments (the outermost __init__ of the chain), so that
        # reset_parameters() can draw the learned tensors exactly as construction did.
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            if "_init_arguments" not in self.__dict__:
                object.__setattr__(self, "_init_arguments", (args, dict(kw)))
            init(self, *args, **kw)

        cls.__init__ = recording_init

    def reset_parameters(self) -> None:
        """Draw the learned tensors again as the constructor does (from torch's global RNG), in place, on
        the module's device and dtype; then recompute the fixed buffers. Use after ``to_empty()``."""
        args, kw = self.__dict__.get("_init_arguments", ((), {}))
        with torch.device("cpu"):
            fresh = type(self)(*args, **kw)
        with torch.no_grad():
            for name, param in self.named_parameters():
                param.copy_(fresh.get_parameter(name))
        self.init_non_persistent_buffers()

    def _register_fixed(self, name: str) -> None:
        self._fixed_names = (*self._fixed_names, name)
        self.register_buffer(name, self._make_buffer(name), persistent=False)

    def _make_buffer(self, name: str) -> Tensor:
        raise NotImplementedError(name)

    def init_non_persistent_buffers(self) -> None:
        """Recompute the fixed buffers (in float32, or float64 after ``.double()``) on the module's device."""
        for name in self._fixed_names:
            old = self._buffers.get(name)
            device = old.device if old is not None and old.device.type != "meta" else self._device()
            with torch.device("cpu"):
                value = self._make_buffer(name)
            if old is not None and old.dtype == torch.float64 and value.is_floating_point():
                value = value.double()
            self._buffers[name] = value.to(device)
        if hasattr(self, "_cache"):
            self._cache.clear()

    def _device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            if t.device.type != "meta":
                return t.device
        return torch.device("cpu")

    def _apply(self, fn, *args, **kwargs):
        """``.to(bfloat16)`` / ``.half()`` leave the fixed float buffers (frequencies, axes, prefix positions)
        in float32: rounding theta^(-2j/D) to bf16 makes the angle at position 1,000 wrong by whole radians.
        Learned parameters take the module's dtype and are used in float32 math; ``.double()`` still converts.
        Fixed buffers that leave the meta device (``to_empty``) are recomputed."""
        if hasattr(self, "_cache"):
            self._cache.clear()
        before = {name: b for name, b in self._buffers.items() if b is not None and b.is_floating_point()}
        was_meta = any(b is not None and b.device.type == "meta" for b in self._buffers.values())
        out = super()._apply(fn, *args, **kwargs)
        for name, old in before.items():
            new = self._buffers.get(name)
            if new is not None and new.dtype in (torch.float16, torch.bfloat16) and old.dtype not in (
                    torch.float16, torch.bfloat16):
                self._buffers[name] = old.to(device=new.device, dtype=old.dtype)
        if was_meta and not any(b is not None and b.device.type == "meta" for b in self._buffers.values()):
            self.init_non_persistent_buffers()
        return out

    name: str = ""
    aliases: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    default_block_size: int | None = None
    fixed_block_size: int | None = None
    rotary: bool = False
    additive: bool = False
    commuting: bool | None = None
    #: The position convention of the method's paper (see ``liere.positions``).
    default_convention: str = "liere"

    def embed(self, x: Tensor, grid_shape=None) -> Tensor:
        """Tokens (B, P + N, C) with the encoding added; the identity unless ``additive``."""
        return x

    def rotation(self, positions: Tensor) -> Rotation | None:
        """R(p) for q and k; None unless ``rotary``."""
        return None

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters weight decay must leave alone (timm/nanoGPT convention): all of them.

        Generators and tables are not weights to shrink: decaying generators shrinks every rotation.
        """
        return {name for name, _ in self.named_parameters()}

    @classmethod
    def block_size_for(cls, head_dim: int, block_size: int | None = None) -> int | None:
        """The block size a build with ``block_size`` uses: the fixed one, the requested one, or the default."""
        if cls.fixed_block_size is not None:
            if block_size is not None and block_size != cls.fixed_block_size:
                b = cls.fixed_block_size
                raise ValueError(f"block_size: {cls.name!r} uses {b}x{b} blocks, got {block_size}")
            return cls.fixed_block_size
        if block_size is not None:
            return block_size
        return cls.default_block_size or head_dim


class RotaryEncoding(PositionEncoding):
    rotary = True
    #: Spherical RoPE composes per-axis exponentials instead of exponentiating their sum.
    composes_axes = False

    def __init__(
        self,
        *,
        pos_dims: int,
        head_dim: int,
        num_heads: int,
        block_size: int | None = None,
        rotary_dim: int | None = None,
        num_layers: int = 1,
        share_layers: bool = False,
        share_heads: bool = False,
        num_prefix_tokens: int = 0,
        prefix_position=None,
        layout: str = "bhnd",
        cache: bool = True,
        pairing: str = "interleaved",
    ):
        super().__init__()
        self.pos_dims = _positive_int("pos_dims", pos_dims)
        self.head_dim = _positive_int("head_dim", head_dim)
        self.num_heads = _positive_int("num_heads", num_heads)
        self._expm_site = new_site()  # on accelerators, exponentials reuse this module's squaring counts
        # Partial rotation (GPT-NeoX, rotary-embedding-torch): only the first rotary_dim channels turn.
        self.rotary_dim = head_dim if rotary_dim is None else _positive_int("rotary_dim", rotary_dim)
        if self.rotary_dim > head_dim:
            raise ValueError(f"rotary_dim: expected at most head_dim={head_dim}, got {rotary_dim}")
        block_size = self.block_size_for(self.rotary_dim, block_size)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or not 2 <= block_size <= self.rotary_dim:
            limit = f"head_dim={head_dim}" if self.rotary_dim == head_dim else f"rotary_dim={self.rotary_dim}"
            raise ValueError(f"block_size: expected 2 <= block_size <= {limit}, got {block_size}")
        self.block_size = block_size
        self.num_blocks = self.rotary_dim // block_size
        self.num_layers = _positive_int("num_layers", num_layers)
        self.param_layers = 1 if share_layers else self.num_layers
        self.param_heads = 1 if share_heads else self.num_heads
        self.num_prefix_tokens = _positive_int("num_prefix_tokens", num_prefix_tokens, 0)
        if layout not in LAYOUTS:
            raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        # Which channels form a block (``liere.pairing``): "interleaved" (2m, 2m+1) or "half" (m, m + D/2).
        self.pairing = check_pairing(pairing, getattr(self, "rotary_dim", None) or self.head_dim)
        if prefix_position is not None:
            try:
                prefix = torch.as_tensor(prefix_position, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"prefix_position: expected numbers, got {prefix_position!r}") from None
            if prefix.device.type != "meta" and not bool(torch.isfinite(prefix).all()):
                raise ValueError(f"prefix_position: contains NaN or inf values ({prefix_position!r})")
            if prefix.ndim == 1:
                prefix = prefix.expand(self.num_prefix_tokens, -1)
            if prefix.shape != (self.num_prefix_tokens, pos_dims) or self.num_prefix_tokens == 0:
                raise ValueError(
                    f"prefix_position: expected shape ({pos_dims},) or (num_prefix_tokens={self.num_prefix_tokens}, "
                    f"{pos_dims}) with num_prefix_tokens > 0, got {tuple(prefix.shape)}"
                )
            self._prefix_value = prefix_position.tolist() if isinstance(prefix_position, Tensor) and \
                prefix_position.device.type != "meta" else prefix_position
            self._register_fixed("prefix_position")
        else:
            self.prefix_position = None
        self.cache = cache
        self._cache: OrderedDict = OrderedDict()

    def _make_buffer(self, name: str) -> Tensor:
        if name == "prefix_position":
            prefix = torch.as_tensor(self._prefix_value, dtype=torch.float32)
            return (prefix.expand(self.num_prefix_tokens, -1) if prefix.ndim == 1 else prefix).clone()
        return super()._make_buffer(name)

    # ----- what a method defines --------------------------------------------------------
    def generator_blocks(self) -> Tensor:
        """Skew generator blocks (L, d, Hp, M, b, b) in float32."""
        raise NotImplementedError

    def _compute(self, positions: Tensor) -> Rotation:
        """Rotation (L, B', Hp, N, ...) of float32 positions (B', N, d)."""
        raise NotImplementedError

    # ----- public API -------------------------------------------------------------------
    def rotation(self, positions: Tensor) -> Rotation:
        """R(p) for the patch positions (N, d) or (B, N, d); prefix tokens are prepended.

        The result is independent of the batch of q and k: compute it once per
        forward pass and pass it to every layer.
        """
        positions = check_positions(positions, self.pos_dims, dtype=self.math_dtype)
        key = self._cache_key(positions)
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        device_type = positions.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            if self.prefix_position is not None:
                prefix = self.prefix_position.to(positions.device).expand(positions.shape[0], -1, -1)
                rotation = self._compute(torch.cat((prefix, positions), 1))
            elif self.num_prefix_tokens and self._prefix_at_origin(positions):
                # R(0) = I: the prefix tokens' identity comes out of the computation itself (no padded copy)
                origin = positions.new_zeros(positions.shape[0], self.num_prefix_tokens, positions.shape[2])
                rotation = self._compute(torch.cat((origin, positions), 1))
            else:
                rotation = self._pad_prefix(self._compute(positions))
        if key is not None and not rotation._data.requires_grad:  # never keep (or serve) a graph
            self._cache[key] = rotation
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return rotation

    def forward(self, q: Tensor, k: Tensor, positions_or_rotation, *, layer: int = 0):
        """Rotated (q, k). ``positions_or_rotation``: positions (N, d) / (B, N, d) or a ``Rotation``."""
        rotation = positions_or_rotation
        if not isinstance(rotation, Rotation):
            rotation = self.rotation(rotation)
        rotation = rotation.layer(self._check_layer(layer))
        if self.pairing == "half":  # rotate in the interleaved basis (liere.pairing)
            r = self.rotary_dim
            q, k = apply_rotation_qk(to_interleaved(q, r), to_interleaved(k, r), rotation, layout=self.layout)
            return from_interleaved(q, r), from_interleaved(k, r)
        return apply_rotation_qk(q, k, rotation, layout=self.layout)

    def generators(self, layer: int = 0) -> Tensor:
        """Dense skew-symmetric generators A_k of one layer, shape (d, H, head_dim, head_dim)."""
        blocks = self.generator_blocks()[self._param_layer(layer)]  # (d, Hp, M, b, b)
        d, hp, m, b, _ = blocks.shape
        dense = blocks.new_zeros(d, hp, self.head_dim, self.head_dim)
        for j in range(m):
            dense[..., j * b : (j + 1) * b, j * b : (j + 1) * b] = blocks[:, :, j]
        return self._to_channels(dense).expand(d, self.num_heads, self.head_dim, self.head_dim)

    def rotation_matrix(self, positions: Tensor, layer: int = 0) -> Tensor:
        """Dense R(p) of one layer: (H, N, D, D), or (B, H, N, D, D) for batched positions."""
        batched = isinstance(positions, Tensor) and positions.ndim == 3
        dense = self.rotation(positions).layer(self._check_layer(layer)).dense()[0]  # (B', Hp, N, D, D)
        dense = self._to_channels(dense)
        dense = dense.expand(dense.shape[0], self.num_heads, *dense.shape[2:])
        return dense if batched else dense[0]

    def extra_repr(self) -> str:
        return (
            f"pos_dims={self.pos_dims}, head_dim={self.head_dim}, num_heads={self.num_heads}, "
            f"block_size={self.block_size}, rotary_dim={self.rotary_dim}, num_layers={self.num_layers}, param_layers={self.param_layers}, "
            f"param_heads={self.param_heads}, num_prefix_tokens={self.num_prefix_tokens}, layout={self.layout!r}"
            + (f", pairing={self.pairing!r}" if self.pairing != "interleaved" else "")
        )

    # ----- helpers ----------------------------------------------------------------------
    def _to_channels(self, dense: Tensor) -> Tensor:
        """Dense (..., D, D) matrices from the interleaved basis to the channels of ``pairing``."""
        if self.pairing == "interleaved":
            return dense
        inverse = torch.argsort(permutation(self.head_dim, self.pairing, self.rotary_dim)).to(dense.device)
        return dense[..., inverse, :][..., inverse]

    @property
    def math_dtype(self) -> torch.dtype:
        """float32, or float64 once the module is converted with ``.double()`` (for gradcheck)."""
        for t in (*self.parameters(), *self.buffers()):
            if t.dtype == torch.float64:
                return torch.float64
        return torch.float32

    def _check_layer(self, layer: int) -> int:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.num_layers:
            raise ValueError(f"layer: expected an integer in [0, num_layers={self.num_layers}), got {layer!r}")
        return layer

    def _param_layer(self, layer: int) -> int:
        return self._check_layer(layer) if self.param_layers > 1 else 0

    def _prefix_at_origin(self, positions: Tensor) -> bool:
        """Whether to give prefix tokens the identity by computing R at the origin (where the method makes
        R(0) = I without an exponential) instead of padding the rotation (a copy of it)."""
        return False

    def _pad_prefix(self, rotation: Rotation) -> Rotation:
        """Give prefix tokens the identity rotation."""
        p = self.num_prefix_tokens
        if p == 0:
            return rotation
        if rotation.parts is not None:
            return Rotation.from_layers(self._pad_prefix(part) for part in rotation.parts)
        if rotation.is_planar:
            c, s = rotation.cos, rotation.sin
            shape = (*c.shape[:3], p, c.shape[4])
            return replace(rotation, cos=torch.cat((c.new_ones(shape), c), 3), sin=torch.cat((s.new_zeros(shape), s), 3))
        blocks = rotation.blocks
        eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
        shape = (*blocks.shape[:3], p, *blocks.shape[4:])
        return replace(rotation, blocks=torch.cat((eye.expand(shape), blocks), 3))

    def _cache_key(self, positions: Tensor):
        """Eval-mode cache key: everything the rotation depends on, or None to bypass the cache.

        The key holds the exact position values (their bytes, not a hash of them), shape,
        device and dtype, the prefix settings, the parameters' and buffers' identities and
        versions, and whether inference mode is on (inference tensors cannot enter autograd).
        Calls whose result would carry a graph -- positions that require grad (learned
        coordinates, point clouds), or trainable parameters with grad enabled -- bypass it.
        """
        if not self.cache or self.training or tracing():
            return None
        if torch.is_grad_enabled() and (positions.requires_grad or self._has_grad_params()):
            return None
        state = tuple((t.device, t.dtype, t.data_ptr(), t._version, tuple(t.shape))
                      for t in (*self.parameters(), *self.buffers()))
        values = positions.detach().contiguous().cpu().numpy().tobytes()
        return (tuple(positions.shape), positions.device, positions.dtype, values, self.num_prefix_tokens,
                torch.is_inference_mode_enabled(), state)

    def _has_grad_params(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)


class PlanarEncoding(RotaryEncoding):
    """b = 2 methods: generators are frequencies, rotations are cos/sin of p . f."""

    commuting = True
    fixed_block_size = 2

    def frequencies(self) -> Tensor:
        """(L, d, Hp, M) angular frequency of pair m along axis k."""
        raise NotImplementedError

    def generator_blocks(self) -> Tensor:
        freqs = self.frequencies()
        return freqs[..., None, None] * _J.to(device=freqs.device, dtype=freqs.dtype)

    def _compute(self, positions: Tensor) -> Rotation:
        angles = torch.einsum("bnd,ldhm->lbhnm", positions, self.frequencies().to(positions.dtype))
        return Rotation(self.head_dim, cos=torch.cos(angles), sin=torch.sin(angles))


class BlockEncoding(RotaryEncoding):
    """b >= 2 methods with general skew blocks: R = exp(sum_k p_k A_k) blockwise."""

    def _blocks_at(self, positions: Tensor) -> Tensor:
        """G(p) blocks (L, B', Hp, N, M, b, b); override when the structure allows a cheaper form."""
        return _generator_field(positions, self.generator_blocks().to(positions.dtype))

    def _compute(self, positions: Tensor) -> Rotation:
        plan = self._multiples_plan(positions)
        if not self._per_layer_batches(positions):
            if plan is None:
                return self._exponential(self._blocks_at(positions))
            return self._exponential_at(positions, self.generator_blocks().to(positions.dtype), plan)
        generators = self.generator_blocks().to(positions.dtype)
        return Rotation.from_layers(self._exponential_at(positions, g, plan, recompute=True)
                                    for g in generators.split(1))

    def _exponential(self, field: Tensor, recompute: bool = False) -> Rotation:
        return Rotation(self.head_dim, blocks=skew_expm(field, site=self._expm_site, recompute=recompute),
                        orthogonal=True)

    def _exponential_at(self, positions: Tensor, generators: Tensor, plan: multiples.Plan | None,
                        recompute: bool = False) -> Rotation:
        """R at the positions (1, N, d): exponentials at the plan's base positions, products at their multiples
        and the identity at the origin (``liere.ops.multiples``); every position's exponential without a plan."""
        if plan is None:
            return self._exponential(_generator_field(positions, generators), recompute)
        base = positions[:, plan.base]
        blocks = skew_expm(_generator_field(base, generators), site=self._expm_site, recompute=recompute)
        return Rotation(self.head_dim, blocks=multiples.from_multiples(blocks, plan, dim=3), orthogonal=True)

    def _prefix_at_origin(self, positions: Tensor) -> bool:
        # With a plan the origin is the identity, made in the plan's own output: the padded copy of a dense
        # per-layer LieRE's rotation (6.3 MB per layer) is not made, nor kept beside the unpadded one.
        return self._multiples_plan(positions) is not None

    def _multiples_plan(self, positions: Tensor) -> multiples.Plan | None:
        """Where positions are multiples of each other (R(g q) = R(q)^g for a field linear in p), the plan that
        makes their rotations by products (``liere.ops.multiples``). Only where an exponential costs more than
        the products that replace it (b >= _MULTIPLES_FROM), on the CPU (the plan reads the positions on the
        host: a synchronisation on an accelerator), for one set of positions shared by the batch, outside
        traced graphs, and for the generic field ``_blocks_at`` (methods that override it build G(p) their way).
        """
        if (self.block_size < _MULTIPLES_FROM or positions.device.type != "cpu" or positions.shape[0] != 1
                or positions.requires_grad or tracing() or type(self)._blocks_at is not BlockEncoding._blocks_at):
            return None
        found = multiples.plan(positions[0])
        return found if found is not None and len(found.base) else None

    def _per_layer_batches(self, positions: Tensor) -> bool:
        """Whether to make each layer's rotation by itself (one exponential per layer) instead of all at once.

        On the CPU, for a batch of layers larger than glibc's largest mmap threshold (32 MB; see
        ``liere/allocator.py``): each such buffer (the generators at every position, the rotations, both
        their gradients) is mapped fresh from the OS and faulted in again every step. Dense per-layer LieRE on
        a ViT-Tiny (12 x 6 heads x 65 tokens of 64x64 at batch 32) made four of them, 75 MB each; one layer's
        are 6.3 MB and stay on the heap. Each layer's backward recomputes its exponentials (as the batched
        call does at that size), so the memory kept for the backward is the same.
        """
        b = self.block_size
        if (self.param_layers == 1 or b <= 4 or positions.device.type != "cpu" or tracing()
                or torch.compiler.is_compiling() or type(self)._blocks_at is not BlockEncoding._blocks_at):
            return False
        matrices = self.param_layers * positions.shape[0] * self.param_heads * positions.shape[1] * self.num_blocks
        return matrices * b * b * positions.element_size() > _PER_LAYER_BYTES


def _generator_field(positions: Tensor, generators: Tensor) -> Tensor:
    """sum_k p_k A_k: positions (B', N, d), generators (L, d, Hp, M, b, b) -> (L, B', Hp, N, M, b, b)."""
    return torch.einsum("bnd,ldhmij->lbhnmij", positions, generators)


def skew_from_upper(params: Tensor, size: int) -> Tensor:
    """(..., size*(size-1)/2) upper-triangle entries -> skew (..., size, size)."""
    rows, cols = torch.triu_indices(size, size, offset=1, device=params.device)
    upper = params.new_zeros(*params.shape[:-1], size, size)
    upper[..., rows, cols] = params
    return upper - upper.transpose(-1, -2)
