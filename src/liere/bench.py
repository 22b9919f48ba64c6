"""``liere bench``: every method against its peers, side by side in one process.

What is timed is one training step of the position encoding alone, the same
for every row:

    parameters --> rotations --> rotated q and k --> backward to q, k and the parameters

Peers recompute their rotations every step too, so nothing is cached on
either side (modules are in training mode). Rows run interleaved: each round
runs every row once, in the same order, after ``warmup`` untimed rounds; the
table reports the median over rounds, so a burst of load on a shared machine
hits all rows alike. Ratios are taken within one run.

Peers:

* ``rte-axial``   rotary-embedding-torch's axial RoPE: ``RotaryEmbedding(freqs_for="pixel")``,
                  ``get_axial_freqs(*grid)`` then ``apply_rotary_emb`` on q and on k.
* ``dense-LieRE`` the published LieRE formula: one dense head_dim x head_dim generator per
                  axis and head, ``R = matrix_exp(sum_k p_k A_k)`` per head and position, then an
                  einsum with q and k.
* ``naive-mixed`` RoPE-Mixed written the straightforward way: angles from learned frequencies,
                  ``repeat_interleave`` to the channels, cos/sin, ``rotate_half``.

Peak memory is the peak of bytes held by tensors allocated during one step
(the CPU or CUDA allocator's events recorded by ``torch.profiler`` with
``profile_memory=True``, summed in time order); q, k and the parameters
existed before the step and are not counted, their gradients are.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from .allocator import allocator_status, tune_if_requested

__all__ = ["main", "run_case", "run_step", "CASES", "Case", "TARGETS", "STEP_ROWS", "STEP_TARGETS"]


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    heads: int
    head_dim: int
    grid: tuple[int, ...]

    @property
    def tokens(self) -> int:
        return math.prod(self.grid)

    def describe(self) -> str:
        return (f"B={self.batch}, H={self.heads}, grid={'x'.join(map(str, self.grid))} (N={self.tokens}), "
                f"head_dim={self.head_dim}, {len(self.grid)}-D positions")


CASES = {
    "vit": Case("vit", 64, 6, 64, (8, 8)),
    "3d": Case("3d", 64, 6, 64, (4, 8, 8)),
    # The dense peer takes ~15 s a round here (6 x 1024 exponentials of 64 x 64): after 60 s of samples
    # a row keeps the ones it has (see run_case), so this case takes a few minutes on a small CPU.
    "n1024": Case("n1024", 64, 6, 64, (32, 32)),
}

# (label, method, block_size): liere's rows.
LIERE_ROWS = [
    ("rope_axial", "rope_axial", 2),
    ("rope_mixed", "rope_mixed", 2),
    ("string", "string", 2),
    ("string_circulant", "string_circulant", 2),
    ("comrope_ap b=4", "comrope_ap", 4),
    ("comrope_ld b=4", "comrope_ld", 4),
    ("liere b=2", "liere", 2),
    ("liere b=4", "liere", 4),
    ("liere b=8", "liere", 8),
    ("liere b=16", "liere", 16),
    ("liere b=64", "liere", 64),
    ("spherical b=3", "spherical", 3),
]
PEERS = ["rte-axial", "dense-LieRE", "naive-mixed"]
# (row, peer, the largest allowed time ratio row / peer).
TARGETS = [
    ("liere b=8", "rte-axial", 1.5),
    ("rope_mixed", "rte-axial", 1.1),
    ("liere b=64", "dense-LieRE", 0.5),
    ("comrope_ld b=4", "rte-axial", 1.5),
]


# ----- peers ------------------------------------------------------------------------------
class DenseLieRE(nn.Module):
    """The published LieRE formula: R(p) = matrix_exp(sum_k p_k A_k) with dense A_k per head."""

    def __init__(self, pos_dims: int, heads: int, head_dim: int):
        super().__init__()
        self.head_dim = head_dim
        n_upper = head_dim * (head_dim - 1) // 2
        self.upper = nn.Parameter(torch.rand(pos_dims, heads, n_upper) * 2 * math.pi)
        rows, cols = torch.triu_indices(head_dim, head_dim, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor):
        d, h, _ = self.upper.shape
        a = self.upper.new_zeros(d, h, self.head_dim, self.head_dim)
        a[..., self.rows, self.cols] = self.upper
        a = a - a.transpose(-1, -2)
        # matrix_exp needs a contiguous input (it views it internally).
        rotation = torch.linalg.matrix_exp(torch.einsum("nd,dhij->hnij", positions, a).contiguous())
        return (torch.einsum("hnij,bhnj->bhni", rotation, q), torch.einsum("hnij,bhnj->bhni", rotation, k))


class NaiveMixedRoPE(nn.Module):
    """RoPE-Mixed as a straightforward eager implementation would write it."""

    def __init__(self, pos_dims: int, heads: int, head_dim: int, theta: float = 10.0):
        super().__init__()
        mags = theta ** (-torch.arange(head_dim // 2) / (head_dim // 2))
        self.freqs = nn.Parameter(torch.randn(pos_dims, heads, 1) * mags)

    @staticmethod
    def rotate_half(x: Tensor) -> Tensor:
        x = x.unflatten(-1, (-1, 2))
        return torch.stack((-x[..., 1], x[..., 0]), -1).flatten(-2)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor):
        angles = torch.einsum("nd,dhm->hnm", positions, self.freqs).repeat_interleave(2, -1)
        cos, sin = angles.cos(), angles.sin()
        return q * cos + self.rotate_half(q) * sin, k * cos + self.rotate_half(k) * sin


class RteAxial(nn.Module):
    """rotary-embedding-torch's axial RoPE for images/volumes (as its README shows)."""

    def __init__(self, grid: tuple[int, ...], head_dim: int):
        super().__init__()
        from rotary_embedding_torch import RotaryEmbedding

        per_axis = head_dim // len(grid) // 2 * 2  # even, so that sum over axes <= head_dim
        self.grid = grid
        self.rope = RotaryEmbedding(dim=per_axis, freqs_for="pixel", max_freq=10)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor):
        from rotary_embedding_torch import apply_rotary_emb

        freqs = self.rope.get_axial_freqs(*self.grid).flatten(0, -2)  # (N, rotated channels)
        return apply_rotary_emb(freqs, q), apply_rotary_emb(freqs, k)


# ----- rows -------------------------------------------------------------------------------
@dataclass
class Row:
    label: str
    group: str  # "peer" | "liere"
    module: nn.Module
    positions: Tensor
    call: object  # (module, q, k, positions) -> (q', k')
    times: list = field(default_factory=list)
    peak_bytes: int | None = None
    error: str | None = None


def _liere_call(module, q, k, positions):
    rotation = module.rotation(positions)  # once per step, shared by q and k
    return module(q, k, rotation)


def _peer_call(module, q, k, positions):
    return module(q, k, positions)


def build_rows(case: Case, device: torch.device) -> list[Row]:
    import liere

    from .positions import grid

    d = len(case.grid)
    rows = []
    peers = {
        "rte-axial": lambda: RteAxial(case.grid, case.head_dim),
        "dense-LieRE": lambda: DenseLieRE(d, case.heads, case.head_dim),
        "naive-mixed": lambda: NaiveMixedRoPE(d, case.heads, case.head_dim),
    }
    conventions = {"rte-axial": "index", "dense-LieRE": "liere", "naive-mixed": "index"}
    for label, make in peers.items():
        try:
            module = make().to(device)
        except ImportError as exc:  # rotary-embedding-torch is an optional extra
            rows.append(Row(label, "peer", None, None, None, error=f"not installed ({exc.name})"))
            continue
        rows.append(Row(label, "peer", module, grid(case.grid, conventions[label], device=device), _peer_call))
    for label, method, b in LIERE_ROWS:
        if b > case.head_dim:
            continue
        pe = liere.build(method, pos_dims=d, head_dim=case.head_dim, num_heads=case.heads, block_size=b).to(device)
        rows.append(Row(label, "liere", pe.train(), grid(case.grid, pe.default_convention, device=device), _liere_call))
    return rows


class _Inputs:
    def __init__(self, case: Case, device, dtype):
        shape = (case.batch, case.heads, case.tokens, case.head_dim)
        self.q = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
        self.k = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
        self.gq = torch.randn(shape, device=device, dtype=dtype)
        self.gk = torch.randn(shape, device=device, dtype=dtype)


def _step(row: Row, x: _Inputs):
    x.q.grad = x.k.grad = None
    for p in row.module.parameters():
        p.grad = None
    q, k = row.call(row.module, x.q, x.k, row.positions)
    torch.autograd.backward((q, k), (x.gq, x.gk))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ start/stop lines, which go straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _peak_bytes(run, device) -> int:
    """Peak bytes of tensors allocated while ``run()`` executes, from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with _quiet_stderr(), profile(activities=activities, profile_memory=True) as prof:
        run()
        _sync(device)
    want = "cuda" if device.type == "cuda" else "cpu"
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events = [e for e in events if str(e.device_type()).lower().endswith(want)] or events
    events.sort(key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0))


def _measure_peak(row: Row, x: _Inputs, device) -> int:
    """Peak bytes of tensors allocated during one step of ``row``."""
    return _peak_bytes(lambda: _step(row, x), device)


def run_case(case: Case, *, repeats: int = 15, warmup: int = 3, device="cpu", dtype=torch.float32,
             memory: bool = True, max_seconds_per_row: float = 60.0, log=print) -> dict:
    """Time every row of ``case`` interleaved; return a JSON-able dict."""
    device = torch.device(device)
    torch.manual_seed(0)
    rows = build_rows(case, device)
    x = _Inputs(case, device, dtype)
    live = [r for r in rows if r.error is None]
    for r in live:  # correctness of the setup before timing anything
        try:
            _step(r, x)
        except Exception as exc:  # report, keep the other rows
            r.error = f"{type(exc).__name__}: {exc}"
    live = [r for r in live if r.error is None]
    for _ in range(warmup):
        for r in live:
            _step(r, x)
    budget = {}
    for rnd in range(repeats):
        for r in live:
            if budget.get(r.label, 0.0) > max_seconds_per_row and len(r.times) >= 3:
                continue  # a very slow row (the dense peer at N=1024) keeps its first samples
            _sync(device)
            t0 = time.perf_counter()
            _step(r, x)
            _sync(device)
            dt = time.perf_counter() - t0
            r.times.append(dt)
            budget[r.label] = budget.get(r.label, 0.0) + dt
    if memory:
        for r in live:
            r.peak_bytes = _measure_peak(r, x, device)
    return _summarise(case, rows, device, dtype, repeats, warmup)


def _summarise(case, rows, device, dtype, repeats, warmup) -> dict:
    med = {r.label: statistics.median(r.times) for r in rows if r.times}
    out_rows = []
    for r in rows:
        entry = {"label": r.label, "group": r.group, "error": r.error}
        if r.times:
            entry.update(
                median_ms=1e3 * med[r.label],
                min_ms=1e3 * min(r.times),
                samples=len(r.times),
                peak_mb=None if r.peak_bytes is None else r.peak_bytes / 2**20,
                ratio={p: med[r.label] / med[p] for p in PEERS if p in med},
            )
        out_rows.append(entry)
    targets = []
    for label, peer, limit in TARGETS:
        if label in med and peer in med:
            ratio = med[label] / med[peer]
            targets.append({"row": label, "peer": peer, "limit": limit, "ratio": ratio, "met": ratio <= limit})
    return {
        "case": case.name, "config": case.describe(), "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(), "repeats": repeats, "warmup": warmup, "torch": torch.__version__,
        "rows": out_rows, "targets": targets,
    }


def format_table(result: dict) -> str:
    lines = [f"== {result['case']}: {result['config']}  [{result['device']}, {result['dtype']}, "
             f"{result['threads']} threads, median of {result['repeats']} interleaved rounds after "
             f"{result['warmup']} warm-up]"]
    head = f"{'method':<16}{'ms':>10}{'min ms':>10}" + "".join(f"{'x ' + p:>15}" for p in PEERS) + f"{'peak MB':>10}"
    lines += [head, "-" * len(head)]
    for r in result["rows"]:
        if r.get("error") and "median_ms" not in r:
            lines.append(f"{r['label']:<16}  skipped: {r['error']}")
            continue
        ratios = "".join(f"{r['ratio'][p]:>15.2f}" if p in r["ratio"] else f"{'-':>15}" for p in PEERS)
        peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}"
        lines.append(f"{r['label']:<16}{r['median_ms']:>10.2f}{r['min_ms']:>10.2f}{ratios}{peak:>10}")
    for t in result["targets"]:
        verdict = "met" if t["met"] else "MISSED"
        lines.append(f"target {t['row']} <= {t['limit']} x {t['peer']}: {t['ratio']:.2f}  {verdict}")
    return "\n".join(lines)


# ----- exponential micro-benchmark ----------------------------------------------------------
def run_expm(*, repeats: int = 9, warmup: int = 2, quick: bool = False, log=print) -> dict:
    """skew_expm forward+backward against autograd through torch.linalg.matrix_exp (float32)."""
    from .ops.expm import skew_expm

    sizes = [(64, 8, 4), (64, 16, 4), (6 * 64, 64, 1)] if not quick else [(8, 8, 2), (4, 16, 2), (2, 64, 1)]
    rows = []
    gen = torch.Generator().manual_seed(0)
    for count, b, scale in sizes:
        # ViT-like workload: (heads * tokens * blocks) blocks; |A| of a few radians.
        n = count * (6 if b < 64 else 1) * (64 // b)
        u = torch.randn(n, b, b, generator=gen)
        a0 = (u - u.mT) * (scale / math.sqrt(b))
        g = torch.randn(n, b, b, generator=gen)

        def ours():
            a = a0.clone().requires_grad_()
            skew_expm(a).backward(g)

        def theirs():
            a = a0.clone().requires_grad_()
            torch.linalg.matrix_exp(a).backward(g)

        times = {"liere skew_expm": [], "torch matrix_exp": []}
        fns = {"liere skew_expm": ours, "torch matrix_exp": theirs}
        for i in range(warmup + repeats):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                if i >= warmup:
                    times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append({"blocks": n, "b": b, **{f"{k} ms": v for k, v in med.items()},
                     "ratio": med["liere skew_expm"] / med["torch matrix_exp"]})
    return {"case": "expm", "rows": rows}


def format_expm(result: dict) -> str:
    lines = ["== expm: forward+backward of exp(A), A (n, b, b) skew, float32; liere vs autograd through "
             "torch.linalg.matrix_exp",
             f"{'n':>8}{'b':>5}{'liere ms':>12}{'torch ms':>12}{'ratio':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['blocks']:>8}{r['b']:>5}{r['liere skew_expm ms']:>12.2f}{r['torch matrix_exp ms']:>12.2f}"
                     f"{r['ratio']:>8.2f}")
    return "\n".join(lines)


# ----- whole training step ------------------------------------------------------------------
# (label, method, block_size, share_layers): the rows of ``--case step``; RoPE-Mixed is the reference.
STEP_ROWS = [
    ("rope_mixed", "rope_mixed", None, False),
    ("rope_axial", "rope_axial", None, False),
    ("visionllama", "visionllama", None, False),
    ("absolute", "absolute", None, False),
    ("comrope_ap b=4", "comrope_ap", 4, False),
    ("comrope_ld b=4", "comrope_ld", 4, False),
    ("spherical b=3", "spherical", 3, False),
    ("string", "string", None, False),
    ("string_circulant", "string_circulant", None, False),
    ("liere b=4", "liere", 4, False),
    ("liere b=8", "liere", 8, False),
    ("liere b=64 shared", "liere", None, True),  # None: b = head_dim, the dense case
    ("liere b=64", "liere", None, False),
]
STEP_REFERENCE = "rope_mixed"
# (row, batch, the largest allowed step-time ratio row / RoPE-Mixed), from issue 10.
STEP_TARGETS = [
    *((row, 32, 1.05) for row in ("liere b=8", "comrope_ld b=4", "comrope_ap b=4", "spherical b=3", "liere b=64 shared")),
    *((row, 128, 1.02) for row in ("liere b=8", "comrope_ld b=4", "comrope_ap b=4", "spherical b=3")),
    ("liere b=64", 32, 2.2),
    ("liere b=64", 128, 1.4),
]


@dataclass(frozen=True)
class StepCase:
    """The project's ViT (dim, depth, heads) on images of ``image`` pixels cut in ``patch``-pixel patches."""

    dim: int = 384
    depth: int = 12
    heads: int = 6
    image: int = 32
    patch: int = 4
    batches: tuple[int, ...] = (32, 128)

    def describe(self) -> str:
        n = (self.image // self.patch) ** 2
        return (f"ViT dim={self.dim}, depth={self.depth}, heads={self.heads}, {self.image}x{self.image} images, "
                f"patch {self.patch} ({n} patches + CLS), per-layer generators unless 'shared', AdamW")


STEP_CASE = StepCase()
STEP_TINY = StepCase(dim=32, depth=2, heads=2, image=8, patch=4, batches=(2, 4))


def _step_model(case: StepCase, method: str, block_size, share: bool, device):
    from .models.vit import ViT

    model = ViT(input_shape=(case.image, case.image), patch_size=case.patch, dim=case.dim, depth=case.depth,
                num_heads=case.heads, method=method, block_size=block_size, share_layers=share).to(device)
    return model.train(), torch.optim.AdamW(model.parameters(), lr=1e-4)


def _train_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def _step_peak(model, opt, x, y, device) -> int:
    return _peak_bytes(lambda: _train_step(model, opt, x, y), device)


COMPILED = " compiled"
NO_KERNEL = " no-kernel"  # the same row with liere's CPU kernels off: the torch ops they replaced


def no_kernel_rows(rows: list) -> list:
    """The rows that rotate by blocks (the CPU kernels' work), relabelled to run with the kernels off."""
    return [(label + NO_KERNEL, method, b, share) for label, method, b, share in rows if b is not None and b <= 32]


def _kernel_setting(label: str):
    from .ops import cpu_kernel

    return cpu_kernel.enabled(not label.endswith(NO_KERNEL))


def round_order(labels: list, rnd: int) -> list:
    """The rows' order in round ``rnd``: rotated by one place per round."""
    shift = rnd % len(labels) if labels else 0
    return labels[shift:] + labels[:shift]


def paired_ratio(times: list[float], reference: list[float]) -> tuple[float, float, float]:
    """Median and quartiles of the round-by-round ratios times[r] / reference[r].

    The rounds interleave the methods, so a round's ratio cancels the machine's drift between rounds (a VM
    that slows by 10% for a minute slows both); the ratio of the two medians does not."""
    if len(times) != len(reference) or not times:
        raise ValueError(f"paired_ratio: expected two equal, non-empty lists of rounds, got {len(times)} "
                         f"and {len(reference)}")
    ratios = sorted(t / r for t, r in zip(times, reference))
    if len(ratios) == 1:
        return ratios[0], ratios[0], ratios[0]
    q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return q2, q1, q3


def _minor_faults() -> int | None:
    """Minor page faults of this process so far (None where ``resource`` is missing, as on Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _allow_recompiles(graphs: int) -> None:
    """Let dynamo compile the model's forward once per row and batch size: the rows share one code object (the
    ViT's forward), and past dynamo's limit (8 by default) it would silently run the later rows eagerly."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, graphs + 1)


def run_step(case: StepCase = STEP_CASE, *, repeats: int = 5, warmup: int = 1, device="cpu", memory: bool = True,
             rows=None, compile: bool = False, log=print) -> dict:
    """Time one training step (forward, backward, AdamW) of the ViT with every method, interleaved round by
    round at each batch size; ratios are to RoPE-Mixed's median in the same run, and ``paired_ratio`` is the
    median of the round-by-round ratios (see ``paired_ratio``).

    With ``compile``, every row also runs as ``torch.compile(model)`` (inductor), labelled "... compiled";
    its first step at each batch size (the compilation) is reported as ``compile_s`` and not timed. A row
    labelled "... no-kernel" runs with liere's CPU kernels off (``no_kernel_rows``)."""
    from .ops import cpu_kernel

    device = torch.device(device)
    rows = STEP_ROWS if rows is None else rows
    models = {}
    for label, method, b, share in rows:
        torch.manual_seed(0)
        models[label] = _step_model(case, method, b, share, device)
        if compile:
            torch.manual_seed(0)
            model, opt = _step_model(case, method, b, share, device)
            models[label + COMPILED] = (torch.compile(model), opt)
    if compile:
        _allow_recompiles(len(rows) * len(case.batches))
    results = []
    compile_s = {}
    for batch in case.batches:
        gen = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, 3, case.image, case.image, generator=gen).to(device)
        y = torch.randint(0, 10, (batch,), generator=gen).to(device)
        times = {label: [] for label in models}
        faults = {label: [] for label in models}
        for label, (model, opt) in models.items():
            if label.endswith(COMPILED):
                t0 = time.perf_counter()
                _train_step(model, opt, x, y)
                _sync(device)
                compile_s[(label, batch)] = time.perf_counter() - t0
        labels = list(models)
        for rnd in range(warmup + repeats):
            # Each round starts one row later, so no method always runs first (or always after the same one).
            for label in round_order(labels, rnd):
                model, opt = models[label]
                _sync(device)
                with _kernel_setting(label):
                    f0 = _minor_faults()
                    t0 = time.perf_counter()
                    _train_step(model, opt, x, y)
                    _sync(device)
                    t1 = time.perf_counter()
                if rnd >= warmup:
                    times[label].append(t1 - t0)
                    if f0 is not None:
                        faults[label].append(_minor_faults() - f0)
        med = {label: statistics.median(t) for label, t in times.items()}
        paired = {label: paired_ratio(t, times[STEP_REFERENCE]) for label, t in times.items()
                  if STEP_REFERENCE in times}
        peaks = {}
        for label in models:
            with _kernel_setting(label):
                peaks[label] = _step_peak(*models[label], x, y, device) if memory else None
        ref = med.get(STEP_REFERENCE)
        for label in models:
            results.append({
                "label": label, "batch": batch, "median_ms": 1e3 * med[label], "min_ms": 1e3 * min(times[label]),
                "samples": len(times[label]), "ratio": None if ref is None else med[label] / ref,
                "paired_ratio": paired[label][0] if label in paired else None,
                "paired_iqr": list(paired[label][1:]) if label in paired else None,
                "peak_mb": None if peaks[label] is None else peaks[label] / 2**20,
                "peak_ratio": None if peaks[label] is None or not peaks.get(STEP_REFERENCE) else
                peaks[label] / peaks[STEP_REFERENCE],
                "compile_s": compile_s.get((label, batch)),
                "faults_per_step": statistics.median(faults[label]) if faults[label] else None,
            })
    by_key = {(r["label"], r["batch"]): r for r in results}
    targets = [{"row": row, "batch": batch, "limit": limit, "ratio": by_key[(row, batch)]["ratio"],
                "paired_ratio": by_key[(row, batch)]["paired_ratio"], "met": by_key[(row, batch)]["ratio"] <= limit}
               for row, batch, limit in STEP_TARGETS if (row, batch) in by_key and by_key[(row, batch)]["ratio"]]
    return {"case": "step", "config": case.describe(), "device": str(device), "threads": torch.get_num_threads(),
            "cpu_kernel": cpu_kernel.status(), "allocator": allocator_status(),
            "repeats": repeats, "warmup": warmup, "torch": torch.__version__, "compile": compile, "rows": results,
            "targets": targets}


def format_step(result: dict) -> str:
    lines = [f"== step: {result['config']}  [{result['device']}, {result['threads']} threads, median of "
             f"{result['repeats']} interleaved rounds after {result['warmup']} warm-up]"]
    compiled = result.get("compile")
    head = (f"{'method':<29}{'batch':>6}{'ms':>10}{'x rope_mixed':>14}{'paired [IQR]':>22}{'peak MB':>10}{'x peak':>8}"
            f"{'faults':>9}" + (f"{'compile s':>11}" if compiled else ""))
    lines += [head, "-" * len(head)]
    for r in result["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        peak_ratio = "-" if r["peak_ratio"] is None else f"{r['peak_ratio']:.2f}"
        pr = r.get("paired_ratio")
        paired = "-" if pr is None else f"{pr:.3f} [{r['paired_iqr'][0]:.3f}, {r['paired_iqr'][1]:.3f}]"
        extra = "" if not compiled else f"{r['compile_s']:>11.1f}" if r.get("compile_s") is not None else f"{'':>11}"
        faults = "-" if r.get("faults_per_step") is None else f"{r['faults_per_step'] / 1000:.1f}k"
        lines.append(f"{r['label']:<29}{r['batch']:>6}{r['median_ms']:>10.1f}{ratio:>14}{paired:>22}{peak:>10}{peak_ratio:>8}"
                     f"{faults:>9}" + extra)
    for t in result["targets"]:
        paired = "" if t.get("paired_ratio") is None else f" (paired {t['paired_ratio']:.3f})"
        lines.append(f"target {t['row']} at batch {t['batch']} <= {t['limit']} x rope_mixed: {t['ratio']:.2f}{paired}  "
                     f"{'met' if t['met'] else 'MISSED'}")
    if result.get("cpu_kernel"):
        lines.append(f"CPU kernels: {result['cpu_kernel']}")
    if result.get("allocator"):
        lines.append(f"Allocator: {result['allocator']} (faults: median minor page faults per step; see "
                     f"liere/allocator.py)")
    return "\n".join(lines)


# ----- command line -------------------------------------------------------------------------
def _tiny(case: Case) -> Case:
    return Case(case.name, 2, 2, case.head_dim, tuple(2 for _ in case.grid))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="liere bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=[*CASES, "expm", "step", "all"], default="vit",
                   help="vit: ViT-Tiny layer, 8x8 grid; 3d: 4x8x8 grid; n1024: 32x32 grid; expm: exponentials; "
                        "step: one training step of the whole ViT-Tiny per method, relative to RoPE-Mixed")
    p.add_argument("--quick", action="store_true", help="few repeats (CI smoke test)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (B=2, H=2, 2 patches per axis), for tests")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 15, --quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds (default 3, --quick 1)")
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="override the case's batch size (step: one or more, default 32 128)")
    p.add_argument("--methods", nargs="+", default=None, metavar="LABEL",
                   help="step: only these rows (labels as printed, e.g. 'liere b=8'; rope_mixed is always kept); "
                        "'<row> no-kernel' runs a block row with liere's CPU kernels off, e.g. 'liere b=8 no-kernel'")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--compile", action="store_true",
                   help="step: also run every row under torch.compile (inductor), with its compile time")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.error = lambda message: p.exit(2, f"liere bench: error: {message}\n")  # one line, no usage block
    args = p.parse_args(argv)
    for name in ("repeats", "warmup", "batch", "threads"):
        value, low = getattr(args, name), 0 if name == "warmup" else 1
        for v in value if isinstance(value, list) else [value]:
            if v is not None and v < low:
                p.error(f"argument --{name}: expected an integer >= {low}, got {v}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        p.error(f"argument --device: expected a torch device such as cpu or cuda, got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"argument --device: {args.device!r} needs a CUDA GPU and this machine has none")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    tune_if_requested()  # as the liere command does (benchmarks/*.py come straight here)
    if args.threads:
        torch.set_num_threads(args.threads)
    default_repeats = 5 if args.case == "step" else 15
    repeats = args.repeats or (2 if args.quick else default_repeats)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick or args.case == "step" else 3)
    names = [*CASES, "expm"] if args.case == "all" else [args.case]
    if args.compile and "step" not in names:
        raise SystemExit("liere bench: --compile: applies to --case step only")
    results = []
    for name in names:
        if name == "step":
            case = STEP_TINY if args.tiny else STEP_CASE
            if args.batch:
                case = replace(case, batches=tuple(args.batch))
            rows = STEP_ROWS
            if args.methods:
                candidates = STEP_ROWS + no_kernel_rows(STEP_ROWS)
                known = [r[0] for r in candidates]
                unknown = [m for m in args.methods if m not in known]
                if unknown:
                    raise SystemExit(f"liere bench: --methods: unknown row(s) {unknown}; known: {known}")
                rows = [r for r in candidates if r[0] in args.methods or r[0] == STEP_REFERENCE]
            res = run_step(case, repeats=repeats, warmup=warmup, device=args.device, memory=not args.no_memory,
                           rows=rows, compile=args.compile)
            print(format_step(res), flush=True)
        elif name == "expm":
            res = run_expm(repeats=repeats, warmup=warmup, quick=args.quick or args.tiny)
            print(format_expm(res), flush=True)
        else:
            case = CASES[name]
            if args.tiny:
                case = _tiny(case)
            if args.batch:
                case = Case(case.name, args.batch[0], case.heads, case.head_dim, case.grid)
            res = run_case(case, repeats=repeats, warmup=warmup, device=args.device,
                           dtype=getattr(torch, args.dtype), memory=not args.no_memory)
            print(format_table(res), flush=True)
        results.append(res)
        print(flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"argv": sys.argv[1:] if argv is None else list(argv), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
