"""liere's CPU kernels (``csrc/cpu_kernels.cpp``): block rotations and small exponentials, built on first use.

Eager PyTorch has no one-pass way to multiply every b-channel block of q and k
by its own small matrix: the packed ``bmm`` in ``apply.py`` copies q and k into
a buffer and back (five passes over them forward, ten backward). The rotation
kernel reads each input once and writes each output once. The exponential
kernel runs ``expm.py``'s algorithm on one matrix at a time (8x8 to 64x64) in
vector registers and L1/L2, where the torch path makes a pass over the whole
batch per operation. Blocks of 32 to 64 (dense LieRE) multiply on register
tiles, six rows at a time: 3.5x torch.bmm's speed at 64x64 on this project's
AMD CPU, where MKL runs a generic path.

They are compiled with the C++ compiler on the PATH (``$CXX``, else ``c++``,
``g++`` or ``clang++``) against the installed torch, with OpenMP (torch's
``at::parallel_for`` is an OpenMP pragma), about 25 s, and cached
under ``$LIERE_CACHE_DIR`` (default ``~/.cache/liere``) keyed by the source,
the torch version and the CPU, so a cluster of mixed machines never loads a
build for another instruction set. Where no compiler works, a warning says so
once and the torch ops run instead: results are the same up to rounding.
``LIERE_CPU_KERNEL=0`` turns the kernels off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

from .._env import turned_off

__all__ = ["available", "status", "enabled", "rotate_blocks", "skew_expm", "ready_in_graph", "rotate_blocks_op",
           "skew_expm_op"]

_SOURCE = Path(__file__).with_name("csrc") / "cpu_kernels.cpp"
_NAMESPACE = "liere_cpu_v3"  # bump with any change to the operators' schemas
# Part of the cache key: bump when the build's flags change, so that no cached build made otherwise is loaded.
_BUILD_VERSION = "openmp"
_lock = threading.Lock()
_state: dict = {"loaded": None, "reason": "", "override": None}


def _cache_dir() -> Path:
    root = os.environ.get("LIERE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "liere")
    return Path(root) / "kernels"


def _cpu_signature() -> str:
    """What decides which instructions a -march=native build may use."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()}|{platform.processor()}|{flags}"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build_flags() -> list[str]:
    from torch.utils.cpp_extension import include_paths, library_paths

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    flags = ["-O3", "-shared", "-fPIC", "-w", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    flags += [f"-I{p}" for p in include_paths()]
    lib = library_paths()[0]
    flags += [f"-L{lib}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{lib}"]
    if sys.platform == "darwin":
        flags += ["-undefined", "dynamic_lookup"]
    return flags


def _library_path() -> Path:
    key = hashlib.sha256()
    key.update(_SOURCE.read_bytes())
    key.update(_BUILD_VERSION.encode())
    key.update(f"{torch.__version__}|{sys.platform}|{_cpu_signature()}".encode())
    return _cache_dir() / f"liere_cpu-{key.hexdigest()[:16]}.so"


def _compile(target: Path) -> None:
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++ or clang++)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target, then rename: concurrent processes (a study's workers) never load a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        errors, flags = [], _build_flags()
        # torch >= 2.14's headers need C++20, older compilers may lack it; some compilers (older clang on
        # arm64) reject -march=native; Apple's clang has no -fopenmp. The first combination that builds wins.
        # -fopenmp matters: torch's at::parallel_for is an OpenMP pragma in its header, so without it every
        # kernel ran on one thread (found 2026-12-03: the tile products took 1.3 ms where 2 threads take 0.6).
        # The library then uses the OpenMP runtime torch has already loaded (same soname), not a second one.
        combos = [(std, arch, omp) for std in ("-std=c++20", "-std=c++17") for arch in (["-march=native"], [])
                  for omp in (["-fopenmp"], [])]
        for std, arch, omp in combos:
            done = subprocess.run([cxx, std, *arch, *omp, str(_SOURCE), "-o", tmp, *flags],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                os.replace(tmp, target)
                return
            lines = done.stderr.strip().splitlines()
            errors.append(next((ln for ln in lines if "error" in ln), lines[-1] if lines else
                               f"exit code {done.returncode}"))
        raise RuntimeError(f"{Path(cxx).name} failed: {errors[0].strip()}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _compile_once(target: Path) -> None:
    """_compile, remembering a failure beside the target, so that later processes (a study's workers, every
    test) do not spend the same seconds failing again; a different compiler (CXX) tries again."""
    marker = target.with_suffix(".failed")
    cxx = str(_compiler())
    if marker.exists():
        tried, _, error = marker.read_text().partition("\n")
        if tried == cxx:
            raise RuntimeError(f"{error} (an earlier build failed; delete {marker} to try again)")
    try:
        _compile(target)
    except RuntimeError as exc:
        try:
            marker.write_text(f"{cxx}\n{exc}")
        except OSError:
            pass
        raise


def _load() -> bool:
    with _lock:
        if _state["loaded"] is not None:
            return _state["loaded"]
        if turned_off("LIERE_CPU_KERNEL"):
            _state.update(loaded=False, reason="turned off by LIERE_CPU_KERNEL")
            return False
        try:
            path = _library_path()
            built = not path.exists()
            if built:
                _compile_once(path)
            try:
                torch.ops.load_library(str(path))
            except OSError:
                if built:
                    raise
                # A cached build that no longer loads (a torch upgrade in place, a damaged file): build again.
                path.unlink(missing_ok=True)
                _compile_once(path)
                torch.ops.load_library(str(path))
            _state.update(loaded=True, reason=f"built at {path}")
        except Exception as exc:  # any failure leaves the torch ops, which compute the same results
            _state.update(loaded=False, reason=f"not built ({exc})")
            warnings.warn(f"liere: the CPU kernels are unavailable, using torch ops instead (slower, same results): "
                          f"{_state['reason']}", RuntimeWarning, stacklevel=3)
        return _state["loaded"]


def available() -> bool:
    """Whether the kernels are built and loaded (building them on the first call) and not switched off."""
    if _state["override"] is False:
        return False
    return _load()


def status() -> str:
    """One line: whether the kernels run, and why not."""
    on = available()
    if _state["override"] is False:
        return "off (liere.ops.cpu_kernel.enabled(False))"
    return ("on, " if on else "off, ") + _state["reason"]


class enabled:
    """Context manager that switches the kernels on or off in this process (benchmarks compare the two)."""

    def __init__(self, on: bool):
        self.on = bool(on)

    def __enter__(self):
        self.previous = _state["override"]
        _state["override"] = None if self.on else False
        return self

    def __exit__(self, *exc):
        _state["override"] = self.previous
        return False


def _ready() -> bool:
    return ready_in_graph() if torch.compiler.is_compiling() else available()


# Block widths the kernels multiply as register tiles (csrc: "tile products"): one row of C per row of q or k
# would be a matrix-vector product, bound by loads; these sum six rows at once.
TILE_WIDTHS = (32, 48, 64)


def supports(xs: list[Tensor], blocks: Tensor) -> bool:
    """CPU tensors, block size 2-32, 48 or 64, and float32 or half-precision inputs (float64 stays on the bmm:
    gradcheck)."""
    b = blocks.shape[-1]
    wide = torch.float64
    return ((2 <= b <= 32 or b in TILE_WIDTHS) and blocks.device.type == "cpu" and blocks.dtype != wide
            and all(x.device.type == "cpu" and x.dtype != wide for x in xs) and _ready())


def _logical(x: Tensor, layout: str) -> Tensor:
    """x as a (B, H, N, D) view: (B, N, H, D) inputs are transposed, not copied."""
    return x if layout == "bhnd" else x.transpose(1, 2)


def _float32_rows(x: Tensor) -> Tensor:
    x = x if x.dtype == torch.float32 else x.float()
    return x if x.stride(-1) == 1 else x.contiguous()


def _rotate(x: Tensor, mats: Tensor, layout: str, rotated: int) -> Tensor:
    """mats (Bp, Hp, N, M, b, b) float32 contiguous, each matrix given transposed; a new float32 tensor like x."""
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    xv, ov = _float32_rows(_logical(x, layout)), _logical(out, layout)
    getattr(torch.ops, _NAMESPACE).rotate_blocks(xv, mats, ov)
    if rotated < x.shape[-1]:
        ov[..., rotated:] = xv[..., rotated:]
    return out


class _KernelBlockRotate(torch.autograd.Function):
    """Rotate q and k (any number of tensors) by the same blocks (Bp, Hp, N, M, b, b).

    With ``orthogonal`` blocks (exponentials of skew-symmetric matrices) the backward reads the rotated outputs y
    instead of the inputs x: x = A^T y, so the blocks' gradient sum g x^T is (sum g y^T) A. The outputs are laid
    out as the incoming gradients are (q and k are often strided views of one qkv projection, whose rows the
    gradient pass would otherwise gather token by token), and the rotation of the gradient and the sums take one
    pass over g instead of two. Outputs changed in place since are noticed, and the inputs used instead.
    """

    @staticmethod
    def forward(ctx, blocks: Tensor, transposed: Tensor | None, layout: str, orthogonal: bool, *xs: Tensor):
        r = blocks.detach().to(torch.float32).contiguous()
        # once for q and k; a rotation applied by several layers passes its own, made once (apply.py)
        r_t = r.mT.contiguous() if transposed is None else transposed
        if r.shape[-1] in TILE_WIDTHS:
            outs = _rotate_tiles(xs, r_t, layout, r.shape[-3] * r.shape[-1])
        else:
            outs = [_rotate(x, r_t, layout, r.shape[-3] * r.shape[-1]).to(x.dtype) for x in xs]
        ctx.layout, ctx.x_meta = layout, [(x.shape, x.dtype, x.device) for x in xs]
        # The blocks themselves, not r: a second derivative (create_graph) must reach their history.
        ctx.save_for_backward(blocks, *(xs if ctx.needs_input_grad[0] else ()))
        # Detached aliases, not saved tensors: saving an output would forbid changing it in place afterwards.
        ctx.outs = [o.detach() for o in outs] if orthogonal and ctx.needs_input_grad[0] else None
        ctx.out_versions = [o._version for o in outs] if ctx.outs is not None else None
        return tuple(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    def backward(ctx, *grads):
        blocks, *xs = ctx.saved_tensors
        outs, ctx.outs = ctx.outs, None
        if torch.is_grad_enabled():  # create_graph=True (a gradient penalty): a backward autograd can differentiate
            return _differentiable_backward(ctx, blocks, xs, grads)
        r = blocks.detach().to(torch.float32).contiguous()
        want_blocks = ctx.needs_input_grad[0]
        from_outputs = outs is not None and [o._version for o in outs] == ctx.out_versions
        if r.shape[-1] in TILE_WIDTHS and all(g is not None for g in grads):
            g_xs, g_blocks = _tile_grads(grads, r, ctx.layout, xs if want_blocks else None,
                                         [ctx.needs_input_grad[4 + i] for i in range(len(grads))])
            return (None if g_blocks is None else g_blocks.to(blocks.dtype), None, None, None, *g_xs)
        g_xs, g_blocks = [], None
        for i, g in enumerate(grads):
            if g is None:
                g_xs.append(None)
                continue
            saved = outs[i] if want_blocks and from_outputs else xs[i] if want_blocks else None
            g_x, part = _grads_of_one(g, r, ctx.layout, saved, from_outputs, ctx.needs_input_grad[4 + i], want_blocks)
            g_xs.append(g_x)
            if part is not None:
                g_blocks = part if g_blocks is None else g_blocks.add_(part)
        if g_blocks is not None:
            g_blocks = g_blocks.to(blocks.dtype)
        return (g_blocks, None, None, None, *g_xs)


def _rotate_tiles(xs: list[Tensor], r_t: Tensor, layout: str, rotated: int) -> list[Tensor]:
    """R x for every x at once (block widths 32-64): each matrix multiplies the rows of q and of k together, so it
    is read once per layer, not once per tensor. New tensors like the xs (float32 math)."""
    outs = [torch.empty(x.shape, dtype=torch.float32, device=x.device) for x in xs]
    xvs = [_float32_rows(_logical(x, layout)) for x in xs]
    ovs = [_logical(o, layout) for o in outs]
    getattr(torch.ops, _NAMESPACE).rotate_tiles(xvs, r_t, ovs)
    for xv, ov in zip(xvs, ovs):
        if rotated < xv.shape[-1]:
            ov[..., rotated:] = xv[..., rotated:]
    return [o.to(x.dtype) for o, x in zip(outs, xs)]


def _tile_grads(grads: list[Tensor], r: Tensor, layout: str, xs: list[Tensor] | None, want_x: list[bool]):
    """The backward at block widths 32-64, one pass per matrix over all tensors: R^T g for each (where wanted)
    and, with the inputs ``xs``, the blocks' gradient sum over all of g x^T (float32)."""
    ops, rotated = getattr(torch.ops, _NAMESPACE), r.shape[-3] * r.shape[-1]
    if xs is None:  # d/dx of R x is R^T g: rotate_tiles takes its matrices transposed, so R itself
        return [t if w else None for t, w in zip(_rotate_tiles(grads, r, layout, rotated), want_x)], None
    gvs = [_float32_rows(_logical(g, layout)) for g in grads]
    xvs = [_float32_rows(_logical(x, layout)) for x in xs]
    g_blocks = torch.empty_like(r)
    if not any(want_x):
        ops.outer_sum_tiles(gvs, xvs, g_blocks)
        return [None] * len(grads), g_blocks
    gx = [torch.empty(g.shape, dtype=torch.float32, device=g.device) for g in grads]
    gxvs = [_logical(t, layout) for t in gx]
    ops.rotate_back_and_outer_sum_tiles(gvs, r, xvs, gxvs, g_blocks)
    for gv, gxv in zip(gvs, gxvs):
        if rotated < gv.shape[-1]:
            gxv[..., rotated:] = gv[..., rotated:]
    return [t.to(g.dtype) if w else None for t, g, w in zip(gx, grads, want_x)], g_blocks


def _grads_of_one(g: Tensor, r: Tensor, layout: str, saved: Tensor | None, from_output: bool, want_x: bool,
                  want_blocks: bool) -> tuple[Tensor | None, Tensor | None]:
    """The gradients of x' = R x to x (in g's dtype) and to the blocks r (float32), from one incoming gradient g.

    r: the blocks, float32 contiguous. saved: the rotated output y (``from_output``, orthogonal blocks) or the
    input x; needed only for the blocks' gradient.
    """
    ops, rotated = getattr(torch.ops, _NAMESPACE), r.shape[-3] * r.shape[-1]
    if want_blocks and from_output:
        gv, yv = _float32_rows(_logical(g, layout)), _float32_rows(_logical(saved, layout))
        part, g_x = torch.empty_like(r), None
        if want_x:
            gx = torch.empty(g.shape, dtype=torch.float32, device=g.device)
            gxv = _logical(gx, layout)
            ops.rotate_back_and_outer_sums(gv, r, yv, gxv, part)
            if rotated < g.shape[-1]:
                gxv[..., rotated:] = gv[..., rotated:]
            g_x = gx.to(g.dtype)
        else:
            ops.block_outer_sums(gv, yv, part)
        return g_x, part @ r  # sum g x^T = (sum g y^T) A
    # d/dx of R x is R^T g: the kernel takes its matrix transposed, so R itself.
    g_x = _rotate(g, r, layout, rotated).to(g.dtype) if want_x else None
    part = None
    if want_blocks:
        part = torch.empty_like(r)
        ops.block_outer_sums(_float32_rows(_logical(g, layout)), _float32_rows(_logical(saved, layout)), part)
    return g_x, part


def _reference(x: Tensor, blocks: Tensor, layout: str) -> Tensor:
    """R x with differentiable torch ops in float32 (apply.py's traceable form); leftover channels pass through."""
    from .apply import _blocks  # apply.py imports this module

    xv = _logical(x, layout).to(torch.float32)
    rotated = blocks.shape[-3] * blocks.shape[-1]
    return _logical(torch.cat((_blocks(xv, blocks.to(torch.float32)), xv[..., rotated:]), -1), layout)


def _differentiable_backward(ctx, blocks: Tensor, xs: list[Tensor], grads):
    """The backward as torch ops, so that autograd can differentiate it again (the kernel's cannot)."""
    # d/dx (R x) does not depend on x: without saved inputs (no d/dR wanted), zeros stand in for them.
    if not xs:
        xs = [torch.zeros(shape, dtype=dtype, device=device) for shape, dtype, device in ctx.x_meta]
    inputs = [x if x.requires_grad else x.detach().requires_grad_() for x in xs]
    wrt = ([blocks] if ctx.needs_input_grad[0] else []) + inputs
    pairs = [(_reference(x, blocks, ctx.layout), g) for x, g in zip(inputs, grads) if g is not None]
    got = torch.autograd.grad([o for o, _ in pairs], wrt, [g.to(o.dtype) for o, g in pairs], create_graph=True,
                              allow_unused=True)
    g_blocks = got[0] if ctx.needs_input_grad[0] else None
    g_xs = [None if g is None or not ctx.needs_input_grad[4 + i] else g.to(meta[1])
            for i, (g, meta) in enumerate(zip(got[len(wrt) - len(inputs):], ctx.x_meta))]
    return (g_blocks, None, None, None, *g_xs)


def rotate_blocks(xs: list[Tensor], blocks: Tensor, layout: str, orthogonal: bool = False,
                  transposed: Tensor | None = None):
    """Rotate every tensor in xs by blocks (Bp, Hp, N, M, b, b); a tuple for several tensors, else one tensor.

    ``orthogonal``: the caller knows every block is orthogonal (see ``_KernelBlockRotate``); False is always
    correct, True for other blocks gives wrong gradients of the blocks. ``transposed``: the blocks' float32
    transposes, contiguous, when the caller keeps them (else made here).
    """
    return _KernelBlockRotate.apply(blocks, transposed, layout, _reads_outputs(blocks, orthogonal), *xs)


def _reads_outputs(blocks: Tensor, orthogonal: bool) -> bool:
    """Whether the backward reads the rotated outputs instead of the inputs (orthogonal blocks only). Not for
    tile widths: the blocks' gradient would then need one more product per matrix, (sum g y^T) A, where the
    inputs are read where they lie (strided views of the qkv projection) at no cost."""
    return bool(orthogonal) and blocks.shape[-1] not in TILE_WIDTHS


# ----- exponentials ---------------------------------------------------------------------------------------
# Only where the kernel's products are vectorised: other sizes ran no faster than the torch path (5x5) or
# up to 3x slower (12x12, 16x16 before vectorising), one thread, forward+backward. 32-64 run on register tiles.
EXPM_SIZES = (8, 16, 32, 48, 64)


def supports_expm(a: Tensor) -> bool:
    """float32 CPU batches of 8x8 to 64x64 matrices (EXPM_SIZES; float64 stays on the torch path: tests,
    gradcheck)."""
    return (a.device.type == "cpu" and a.dtype == torch.float32 and a.ndim >= 2
            and a.shape[-1] == a.shape[-2] and a.shape[-1] in EXPM_SIZES and _ready())


class _KernelExpm(torch.autograd.Function):
    """exp(a) by scaling and squaring, one matrix at a time; the backward recomputes each forward."""

    @staticmethod
    def forward(ctx, a: Tensor):
        n = a.shape[-1]
        ctx.save_for_backward(a)
        flat = a.detach().reshape(-1, n, n).contiguous()
        return getattr(torch.ops, _NAMESPACE).skew_expm(flat).view(a.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (a,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a backward that autograd can differentiate
            from .expm import differentiable_vjp

            return differentiable_vjp(a, grad)
        n = a.shape[-1]
        flat, g = (t.detach().reshape(-1, n, n).float().contiguous() for t in (a, grad))
        return getattr(torch.ops, _NAMESPACE).skew_expm_backward(flat, g).view(a.shape)


def skew_expm(a: Tensor) -> Tensor:
    """exp(a) for a float32 CPU batch (..., n, n), n in EXPM_SIZES (see ``supports_expm``)."""
    return _KernelExpm.apply(a)


# ----- under torch.compile ----------------------------------------------------------------------------------
# Dynamo cannot trace an autograd.Function that keeps state outside its saved tensors (the output aliases and
# version counters above), nor the first build of the kernels. Compiled graphs call the kernels through the
# custom operators below instead: opaque to inductor, one tensor each, with their own fake (shape-only)
# versions. Without them a compiled graph ran the traceable broadcast product of ``apply.py``, for which
# inductor's CPU code took ~30x the kernel's time (LieRE-8, 12 layers, batch 32, forward+backward: 2.4 s
# against 81 ms, benchmarks/rotation_in_step.py). The names carry a version, as the exponential's do
# (``expm.py``): inductor's cache keys a graph by the operators it calls, not by what they return.

@torch.compiler.assume_constant_result
def ready_in_graph() -> bool:
    """``available()``, read once when a graph is traced and kept as a constant of it (so switching the
    kernels off later with ``enabled(False)`` does not change a graph already compiled)."""
    return available()


@torch.library.custom_op("liere::cpu_block_rotate_v1", mutates_args=())
def rotate_blocks_op(x: Tensor, blocks: Tensor, layout: str, orthogonal: bool) -> Tensor:
    """x' = R x for one tensor x (B, H, N, D) or (B, N, H, D) and blocks (Bp, Hp, N, M, b, b), by the kernel;
    differentiable. ``orthogonal`` as in ``rotate_blocks``: its backward then reads x' instead of x."""
    r = blocks.detach().to(torch.float32).contiguous()
    return _rotate(x, r.mT.contiguous(), layout, r.shape[-3] * r.shape[-1]).to(x.dtype)


@rotate_blocks_op.register_fake
def _(x: Tensor, blocks: Tensor, layout: str, orthogonal: bool) -> Tensor:
    return x.new_empty(x.shape)  # contiguous, as the real result


@torch.library.custom_op("liere::cpu_block_rotate_backward_v1", mutates_args=())
def _rotate_backward_op(grad: Tensor, blocks: Tensor, saved: Tensor, layout: str, from_output: bool, want_x: bool,
                        want_blocks: bool) -> tuple[Tensor, Tensor]:
    r = blocks.detach().to(torch.float32).contiguous()
    g_x, part = _grads_of_one(grad, r, layout, saved, from_output, want_x, want_blocks)
    g_x = grad.new_empty(0) if g_x is None else g_x
    return g_x, blocks.new_empty(0) if part is None else part.to(blocks.dtype)


@_rotate_backward_op.register_fake
def _(grad, blocks, saved, layout, from_output, want_x, want_blocks):
    return grad.new_empty(grad.shape if want_x else 0), blocks.new_empty(blocks.shape if want_blocks else 0)


def _rotate_op_setup(ctx, inputs, output) -> None:
    x, blocks, layout, orthogonal = inputs
    ctx.layout, ctx.from_output = layout, _reads_outputs(blocks, orthogonal)
    ctx.save_for_backward(blocks, output if ctx.from_output else x)


def _rotate_op_grad(ctx, grad: Tensor):
    blocks, saved = ctx.saved_tensors
    want_x, want_blocks = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    g_x, g_blocks = _rotate_backward_op(grad, blocks, saved, ctx.layout, ctx.from_output, want_x, want_blocks)
    return (g_x if want_x else None), (g_blocks if want_blocks else None), None, None


rotate_blocks_op.register_autograd(_rotate_op_grad, setup_context=_rotate_op_setup)


@torch.library.custom_op("liere::cpu_skew_expm_v1", mutates_args=())
def skew_expm_op(a: Tensor) -> Tensor:
    """``skew_expm`` as one operator for compiled graphs (the same kernel; its backward recomputes)."""
    n = a.shape[-1]
    return getattr(torch.ops, _NAMESPACE).skew_expm(a.detach().reshape(-1, n, n).contiguous()).view(a.shape)


@skew_expm_op.register_fake
def _(a: Tensor) -> Tensor:
    return a.new_empty(a.shape)


@torch.library.custom_op("liere::cpu_skew_expm_backward_v1", mutates_args=())
def _skew_expm_backward_op(a: Tensor, grad: Tensor) -> Tensor:
    n = a.shape[-1]
    flat, g = (t.detach().reshape(-1, n, n).float().contiguous() for t in (a, grad))
    return getattr(torch.ops, _NAMESPACE).skew_expm_backward(flat, g).view(a.shape).to(a.dtype)


@_skew_expm_backward_op.register_fake
def _(a: Tensor, grad: Tensor) -> Tensor:
    return a.new_empty(a.shape)


def _skew_expm_op_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0])


def _skew_expm_op_grad(ctx, grad: Tensor):
    (a,) = ctx.saved_tensors
    return _skew_expm_backward_op(a, grad)


skew_expm_op.register_autograd(_skew_expm_op_grad, setup_context=_skew_expm_op_setup)
