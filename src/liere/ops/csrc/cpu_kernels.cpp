// liere's CPU kernels, compiled on first use by liere/ops/cpu_kernel.py:
//
// 1. Block rotations of queries and keys: x' = A x on every b-channel block of every row, in one pass.
//    The eager alternative packs q and k into a (matrices x rows x b) buffer for one `bmm` and unpacks the
//    result: five passes over q and k forward and ten backward, where this reads each input once and
//    writes each output once.
// 2. Exponentials of 8x8 to 64x64 skew-symmetric matrices and their backward, one matrix at a time in
//    registers and L1/L2: the same scaling-and-squaring algorithm as liere/ops/expm.py (see there for the why
//    of each step), without the torch path's per-op passes over the whole batch (for a 64x64 batch, 14 of
//    them, each out of cache). The backward recomputes each matrix's forward.
// Blocks and matrices of 32 to 64 multiply on register tiles ("tile products" below).
//
// Block rotation layouts (all float32):
//   x, out, g : logical (B, H, N, D) views with any strides, the last one 1;
//   a         : (Bp, Hp, N, M, b, b) contiguous, Bp in {1, B}, Hp in {1, H}; a rotation row (bp, hp, n)
//               covers every x row (b, h) it broadcasts to.
// `rotate_blocks` takes each matrix TRANSPOSED (a[..., j, i] = A[i, j]) so that its inner loop runs over
// contiguous memory: out_i = sum_j A_ij x_j = sum_j a[j, i] x_j. Pass R^T for R x, and R itself for R^T g.
// `block_outer_sums` writes ga[r, m] = sum over the x rows of row r of g_m x_m^T (the gradient of A).
// `rotate_back_and_outer_sums` is the backward in one pass given the output y = A x instead of x: gx = A^T g
// and ga[r, m] = sum g_m y_m^T (orthogonal A turns it into the gradient: g x^T = (g y^T) A).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <vector>

namespace {

constexpr int kMaxBlock = 32;
// Blocks this wide (dense LieRE's 64, LieRE-32) run as small matrix products on register tiles (see "tile
// products" below) instead of one row at a time.
constexpr bool is_tile_width(int bs) { return bs == 32 || bs == 48 || bs == 64; }

struct Geometry {
  int64_t B, H, N, Bp, Hp, M;
  int bs;
};

Geometry geometry(const at::Tensor& x, const at::Tensor& a) {
  TORCH_CHECK(x.dim() == 4 && a.dim() == 6, "liere block kernel: expected x (B, H, N, D), a (Bp, Hp, N, M, b, b)");
  TORCH_CHECK(x.scalar_type() == at::kFloat && a.scalar_type() == at::kFloat, "liere block kernel: float32 only");
  TORCH_CHECK(x.stride(3) == 1 && a.is_contiguous(), "liere block kernel: x's last stride must be 1, a contiguous");
  Geometry g{x.size(0), x.size(1), x.size(2), a.size(0), a.size(1), a.size(3), static_cast<int>(a.size(4))};
  TORCH_CHECK(((g.bs >= 1 && g.bs <= kMaxBlock) || is_tile_width(g.bs)) && a.size(5) == g.bs,
              "liere block kernel: block size 1..32, 48 or 64");
  TORCH_CHECK(a.size(2) == g.N && (g.Bp == 1 || g.Bp == g.B) && (g.Hp == 1 || g.Hp == g.H),
              "liere block kernel: a does not broadcast to x");
  TORCH_CHECK(g.M * g.bs <= x.size(3), "liere block kernel: blocks wider than x");
  return g;
}

// Calls f(b, h) for every x row that rotation row (bp, hp) covers.
template <typename F>
inline void for_covered_rows(const Geometry& g, int64_t bp, int64_t hp, F&& f) {
  const int64_t nb = g.Bp == 1 ? g.B : 1, nh = g.Hp == 1 ? g.H : 1;
  for (int64_t ib = 0; ib < nb; ++ib)
    for (int64_t ih = 0; ih < nh; ++ih) f(g.Bp == 1 ? ib : bp, g.Hp == 1 ? ih : hp);
}

// A block of BS floats as one SIMD value (GCC/Clang vector extensions; an AVX register for BS = 8), loaded and
// stored unaligned. Left to itself, the compiler vectorised the 8-wide loops below badly (3-8x slower).
template <int BS, typename T = float>
struct Lanes {
  typedef T type __attribute__((vector_size(BS * sizeof(T))));
  static inline type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof(type));
    return v;
  }
  static inline void store(T* p, const type& v) { std::memcpy(p, &v, sizeof(type)); }
};

constexpr bool is_lane_width(int bs) { return bs == 4 || bs == 8 || bs == 16; }

// Blocks whose sums run side by side: one block's b multiply-adds form a chain, each waiting on the last (4
// cycles apiece), so one block at a time left the row latency-bound; four chains interleaved keep the FMA
// units busy (one (128, 6, 65, 64) tensor, b = 8: rotation 1.9 -> 1.25 ms; b = 4: 1.96 -> 1.74 ms).
constexpr int kChains = 4;

// out_m = A_m x_m for blocks [m0, m0 + U) of one row (vectorised sizes), A_m given transposed.
template <int BS, int U>
inline void rotate_blocks_together(const float* a, const float* x, float* out) {
  using L = Lanes<BS, float>;
  typename L::type acc[U];
  for (int u = 0; u < U; ++u) acc[u] = L::load(a + u * BS * BS) * x[u * BS];
  for (int j = 1; j < BS; ++j)
    for (int u = 0; u < U; ++u) acc[u] += L::load(a + u * BS * BS + j * BS) * x[u * BS + j];
  for (int u = 0; u < U; ++u) L::store(out + u * BS, acc[u]);
}

// out_m = A_m x_m for one row, A_m given transposed (rows of `a` are A's columns).
template <int BS>
inline void rotate_row(const float* a, const float* x, float* out, int64_t M, int bs) {
  if constexpr (is_lane_width(BS)) {
    int64_t m = 0;
    for (; m + kChains <= M; m += kChains)
      rotate_blocks_together<BS, kChains>(a + m * BS * BS, x + m * BS, out + m * BS);
    for (; m < M; ++m) rotate_blocks_together<BS, 1>(a + m * BS * BS, x + m * BS, out + m * BS);
  } else {
    float acc[kMaxBlock];
    for (int64_t m = 0; m < M; ++m, a += bs * bs, x += bs, out += bs) {
      for (int i = 0; i < bs; ++i) acc[i] = a[i] * x[0];
      for (int j = 1; j < bs; ++j) {
        const float v = x[j];
        for (int i = 0; i < bs; ++i) acc[i] += a[j * bs + i] * v;
      }
      for (int i = 0; i < bs; ++i) out[i] = acc[i];
    }
  }
}

// ga_m += g_m x_m^T for one row.
template <int BS>
inline void add_outer_row(const float* gr, const float* x, float* ga, int64_t M, int bs) {
  if constexpr (is_lane_width(BS)) {
    using L = Lanes<BS, float>;
    for (int64_t m = 0; m < M; ++m, gr += BS, x += BS, ga += BS * BS) {
      const typename L::type xv = L::load(x);
      for (int i = 0; i < BS; ++i) L::store(ga + i * BS, L::load(ga + i * BS) + gr[i] * xv);
    }
  } else {
    for (int64_t m = 0; m < M; ++m, gr += bs, x += bs, ga += bs * bs)
      for (int i = 0; i < bs; ++i) {
        const float gi = gr[i];
        for (int j = 0; j < bs; ++j) ga[i * bs + j] += gi * x[j];
      }
  }
}

// The backward of y = A x for one row: gx_m = A_m^T g_m (`a` holds A_m itself, the rotate_row convention for a
// transposed matrix) and ga_m += g_m y_m^T, the second while the row of g is still in L1.
template <int BS>
inline void rotate_back_and_add_outer_row(const float* a, const float* gr, const float* y, float* gx, float* ga,
                                          int64_t M, int bs) {
  rotate_row<BS>(a, gr, gx, M, bs);
  add_outer_row<BS>(gr, y, ga, M, bs);
}

// Work is split into units of `tile` consecutive tokens n of one (bp, hp): each unit owns its rotation rows r
// (and their gradient), so no two threads write the same place. Within a unit the x rows are visited (b, h)
// by (b, h), each run of the tile's tokens contiguous in memory for (B, H, N, D) tensors: visiting one token's
// rows across the batch instead (one row per jump of H N D floats) left every row a cache miss the hardware
// prefetcher could not foresee (measured 7x slower than a copy). The tile's matrices stay in L1/L2 meanwhile.
inline int64_t token_tile(const Geometry& g, int64_t bytes_per_rotation_row) {
  return std::clamp<int64_t>((32 << 10) / std::max<int64_t>(bytes_per_rotation_row, 1), 1, 16);
}

// Runs unit(bp, hp, n0, n1, r0) for every unit in parallel; r0 is the rotation row of (bp, hp, n0).
template <typename U>
void for_units(const Geometry& g, int64_t tile, U&& unit) {
  const int64_t tiles = (g.N + tile - 1) / tile;
  at::parallel_for(0, g.Bp * g.Hp * tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t bh = i / tiles, n0 = (i % tiles) * tile;
      unit(bh / g.Hp, bh % g.Hp, n0, std::min(g.N, n0 + tile), bh * g.N + n0);
    }
  });
}

inline std::array<int64_t, 3> row_strides(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

// Calls f(r, rows) for every rotation row r = (bp, hp, n) and every (b, h, n) row that r covers, where rows[k]
// is that row of ts[k], a logical (B, H, N, D) view with strides of its own.
template <size_t K, typename F>
void over_rows(const Geometry& g, int64_t tile, const std::array<const at::Tensor*, K>& ts, F&& f) {
  std::array<float*, K> base;
  std::array<std::array<int64_t, 3>, K> st;
  for (size_t k = 0; k < K; ++k) {
    base[k] = ts[k]->template data_ptr<float>();
    st[k] = row_strides(*ts[k]);
  }
  for_units(g, tile, [&](int64_t bp, int64_t hp, int64_t n0, int64_t n1, int64_t r0) {
    for_covered_rows(g, bp, hp, [&](int64_t b, int64_t h) {
      std::array<float*, K> rows;
      for (size_t k = 0; k < K; ++k) rows[k] = base[k] + b * st[k][0] + h * st[k][1] + n0 * st[k][2];
      for (int64_t n = n0; n < n1; ++n) {
        f(r0 + (n - n0), rows);
        for (size_t k = 0; k < K; ++k) rows[k] += st[k][2];
      }
    });
  });
}

// BS > 0: the block size is a compile-time constant (unrolled, vectorised); BS == 0: any size up to 32.
template <int BS>
void rotate_rows(const at::Tensor& x, const at::Tensor& a, const at::Tensor& out, const Geometry& g) {
  const int bs = BS > 0 ? BS : g.bs;
  const float* ap = a.data_ptr<float>();
  over_rows<2>(g, token_tile(g, g.M * bs * bs * 4), {&x, &out}, [&](int64_t r, const std::array<float*, 2>& row) {
    rotate_row<BS>(ap + r * g.M * bs * bs, row[0], row[1], g.M, bs);
  });
}

template <int BS>
void outer_sums(const at::Tensor& gr, const at::Tensor& x, const at::Tensor& ga, const Geometry& g) {
  const int bs = BS > 0 ? BS : g.bs;
  float* gap = ga.data_ptr<float>();
  ga.zero_();
  over_rows<2>(g, token_tile(g, g.M * bs * bs * 4), {&gr, &x}, [&](int64_t r, const std::array<float*, 2>& row) {
    add_outer_row<BS>(row[0], row[1], gap + r * g.M * bs * bs, g.M, bs);
  });
}

template <int BS>
void rotate_back_and_outer_sums(const at::Tensor& gr, const at::Tensor& a, const at::Tensor& y, const at::Tensor& gx,
                                const at::Tensor& ga, const Geometry& g) {
  const int bs = BS > 0 ? BS : g.bs;
  const float* ap = a.data_ptr<float>();
  float* gap = ga.data_ptr<float>();
  ga.zero_();
  // two matrices per rotation row in cache: A's and its gradient's
  over_rows<3>(g, token_tile(g, 2 * g.M * bs * bs * 4), {&gr, &y, &gx}, [&](int64_t r, const std::array<float*, 3>& row) {
    rotate_back_and_add_outer_row<BS>(ap + r * g.M * bs * bs, row[0], row[1], row[2], gap + r * g.M * bs * bs, g.M, bs);
  });
}

// ----- banded form, for small blocks shared by many rows -----------------------------------------------------
// With b < 8 a block's b x b products are too short for vector registers. Written as bands, the same product
// runs along the whole row: out[c] = sum_{t < 2b-1} W_t[c] x[c + t - (b-1)], with W_t[c] = A_m[i][i + t - (b-1)]
// for c = m b + i (0 outside the block). Each band is one vector multiply-add per kVec channels, so a row costs
// (2b - 1) D / kVec of them instead of b D scalar ones. Building the bands costs about one row, so this form is
// used where a rotation row covers several x rows (kBandMinRows), as images' shared positions do.
constexpr int kVec = 16;
// Benchmark switch (LIERE_CPU_BANDED=0 measures the row-by-row form on the same build).
inline bool banded_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("LIERE_CPU_BANDED");
    return !(v && v[0] == '0');
  }();
  return on;
}
constexpr int64_t kBandMinRows = 4;
using Vec = Lanes<kVec, float>;

// Where the banded form measured faster than the row-by-row one (ViT-Tiny's shape,
// benchmarks/block_kernel.py with and without LIERE_CPU_BANDED=0): b = 2 and 4 rotate fast enough row by row
// (their blocks fit vector lanes or the compiler's own vectorisation), b = 4 sums its outer products faster
// row by row too.
constexpr bool banded_rotate(int bs) { return bs == 3 || bs == 5 || bs == 6; }
constexpr bool banded_outer(int bs) { return bs == 2 || bs == 3 || bs == 5 || bs == 6; }

inline int64_t rows_per_rotation(const Geometry& g) { return (g.Bp == 1 ? g.B : 1) * (g.Hp == 1 ? g.H : 1); }

// The banded form pays off where each rotation row covers several x rows (and is not switched off).
inline bool bands_pay_off(const Geometry& g) { return banded_enabled() && rows_per_rotation(g) >= kBandMinRows; }

// Work space of one unit, zero-filled when made: the bands of its `tile` rotation rows (each 2b-1 rows of `padded`
// floats), two zero-padded copies of x rows (b-1 zeros each side), and the unit's rows: their offsets in x and
// in the other tensor (out or grad, strides of its own), and which of the tile's rotation rows each belongs to.
// The copy of the next x row is made before the current one is read (double buffering): read straight after
// the copy, the shifted vector loads span several of its stores and stall on store forwarding (1.7x slower).
template <int BS>
struct BandWork {
  static constexpr int P = BS - 1, T = 2 * BS - 1;
  const int64_t width, padded, stride;
  std::unique_ptr<float[]> bands, xb;
  std::unique_ptr<int64_t[]> offsets, other, which;
  int64_t count = 0;
  BandWork(const Geometry& g, int64_t tile)
      : width(g.M * BS), padded((g.M * BS + kVec - 1) / kVec * kVec), stride(padded + 2 * P + kVec),
        bands(new float[tile * T * padded]()), xb(new float[2 * stride]()),
        offsets(new int64_t[rows_per_rotation(g) * tile]), other(new int64_t[rows_per_rotation(g) * tile]),
        which(new int64_t[rows_per_rotation(g) * tile]) {}
  float* bands_of(int64_t j) { return bands.get() + j * T * padded; }
  // a (M, b, b) given transposed: A_m[i][k] = a[m b^2 + k b + i]. Entries outside the blocks stay 0 (new[]()).
  void set_bands(int64_t j, const float* a) {
    float* w = bands_of(j);
    for (int64_t m = 0; m < width / BS; ++m)
      for (int i = 0; i < BS; ++i)
        for (int k = 0; k < BS; ++k) w[(k - i + P) * padded + m * BS + i] = a[m * BS * BS + k * BS + i];
  }
  // The unit's rows, (b, h) by (b, h) with the tokens innermost, for x (strides s) and the other tensor (so).
  void collect(const Geometry& g, int64_t bp, int64_t hp, int64_t n0, int64_t n1, const int64_t* s,
               const int64_t* so) {
    count = 0;
    for_covered_rows(g, bp, hp, [&](int64_t b, int64_t h) {
      for (int64_t n = n0; n < n1; ++n, ++count) {
        offsets[count] = b * s[0] + h * s[1] + n * s[2];
        other[count] = b * so[0] + h * so[1] + n * so[2];
        which[count] = n - n0;
      }
    });
  }
  float* copy(int64_t i, const float* x) {
    float* dst = xb.get() + (i & 1) * stride;  // the zeros around it were written once, by new[]()
    std::memcpy(dst + P, x + offsets[i], width * sizeof(float));
    return dst;
  }
  // f(i, padded copy of x row i) for the collected rows, copying row i + 1 before f reads row i.
  template <typename F>
  void over_padded_rows(const float* x, F&& f) {
    if (count == 0) return;
    float* cur = copy(0, x);
    for (int64_t i = 0; i < count; ++i) {
      float* next = i + 1 < count ? copy(i + 1, x) : nullptr;
      f(i, cur);
      cur = next;
    }
  }
};

// Runs f(work, tokens, r0) for every unit, in parallel, with the unit's rows of x and `other` collected in a
// BandWork of its own (a few KB, allocated per unit: no state shared between threads, whatever thread pool
// runs the loop); r0 is the rotation row of the unit's first token.
template <int BS, typename F>
void for_band_units(const Geometry& g, const at::Tensor& x, const at::Tensor& other, F&& f) {
  using W = BandWork<BS>;
  const auto strides = row_strides(x), other_strides = row_strides(other);
  const int64_t tile = token_tile(g, W::T * g.M * BS * 4);
  for_units(g, tile, [&](int64_t bp, int64_t hp, int64_t n0, int64_t n1, int64_t r0) {
    W w(g, tile);
    w.collect(g, bp, hp, n0, n1, strides.data(), other_strides.data());
    f(w, n1 - n0, r0);
  });
}

template <int BS>
void rotate_rows_banded(const at::Tensor& x, const at::Tensor& a, const at::Tensor& out, const Geometry& g) {
  using W = BandWork<BS>;
  const float* ap = a.data_ptr<float>();
  const float* xs = x.data_ptr<float>();
  float* os = out.data_ptr<float>();
  for_band_units<BS>(g, x, out, [&](W& w, int64_t tokens, int64_t r0) {
    const int64_t full = w.width / kVec * kVec;  // chunks stored straight into the row; the rest through ob
    float ob[kVec];
    for (int64_t j = 0; j < tokens; ++j) w.set_bands(j, ap + (r0 + j) * g.M * BS * BS);
    w.over_padded_rows(xs, [&](int64_t i, const float* xb) {
      const float* bands = w.bands_of(w.which[i]);
      float* orow = os + w.other[i];
      for (int64_t v = 0; v < w.padded; v += kVec) {
        Vec::type acc = Vec::load(bands + v) * Vec::load(xb + v);
        for (int t = 1; t < W::T; ++t) acc += Vec::load(bands + t * w.padded + v) * Vec::load(xb + v + t);
        if (v < full) {
          Vec::store(orow + v, acc);
        } else {
          Vec::store(ob, acc);
          std::memcpy(orow + v, ob, (w.width - v) * sizeof(float));
        }
      }
    });
  });
}

// ga_m[i][k] = sum over covered rows of g[m b + i] x[m b + k]: accumulated as bands, folded back per rotation row.
template <int BS>
void outer_sums_banded(const at::Tensor& gr, const at::Tensor& x, const at::Tensor& ga, const Geometry& g) {
  using W = BandWork<BS>;
  float* gap = ga.data_ptr<float>();
  const float* xs = x.data_ptr<float>();
  const float* gs = gr.data_ptr<float>();
  for_band_units<BS>(g, x, gr, [&](W& w, int64_t tokens, int64_t r0) {
    const int64_t full = w.width / kVec * kVec;
    float gtail[kVec];  // the sums start from the zeros of the unit's fresh work space
    w.over_padded_rows(xs, [&](int64_t i, const float* xb) {
      float* bands = w.bands_of(w.which[i]);
      const float* grow = gs + w.other[i];
      for (int64_t v = 0; v < w.padded; v += kVec) {
        Vec::type gv;
        if (v < full) {
          gv = Vec::load(grow + v);
        } else {
          std::fill(gtail, gtail + kVec, 0.0f);
          std::memcpy(gtail, grow + v, (w.width - v) * sizeof(float));
          gv = Vec::load(gtail);
        }
        for (int t = 0; t < W::T; ++t) {
          float* band = bands + t * w.padded + v;
          Vec::store(band, Vec::load(band) + gv * Vec::load(xb + v + t));
        }
      }
    });
    for (int64_t j = 0; j < tokens; ++j) {
      const float* bands = w.bands_of(j);
      float* gar = gap + (r0 + j) * g.M * BS * BS;
      for (int64_t m = 0; m < g.M; ++m)
        for (int i = 0; i < BS; ++i)
          for (int k = 0; k < BS; ++k) gar[m * BS * BS + i * BS + k] = bands[(k - i + W::P) * w.padded + m * BS + i];
    }
  });
}

template <template <int> class Kernel, typename... Args>
void by_block_size(int bs, Args&&... args) {
  switch (bs) {
    case 2: Kernel<2>::run(args...); break;
    case 3: Kernel<3>::run(args...); break;
    case 4: Kernel<4>::run(args...); break;
    case 5: Kernel<5>::run(args...); break;
    case 6: Kernel<6>::run(args...); break;
    case 8: Kernel<8>::run(args...); break;
    case 16: Kernel<16>::run(args...); break;
    default: Kernel<0>::run(args...);
  }
}

template <int BS>
struct Rotate {
  static void run(const at::Tensor& x, const at::Tensor& a, const at::Tensor& out, const Geometry& g) {
    if constexpr (banded_rotate(BS)) {
      if (bands_pay_off(g)) return rotate_rows_banded<BS>(x, a, out, g);
    }
    rotate_rows<BS>(x, a, out, g);
  }
};

template <int BS>
struct OuterSums {
  static void run(const at::Tensor& gr, const at::Tensor& x, const at::Tensor& ga, const Geometry& g) {
    if constexpr (banded_outer(BS)) {
      if (bands_pay_off(g)) return outer_sums_banded<BS>(gr, x, ga, g);
    }
    outer_sums<BS>(gr, x, ga, g);
  }
};

// Where either half would take the banded form, the two halves run as the two operators above (each in the form
// that measured faster); elsewhere in one pass.
template <int BS>
struct RotateBackAndOuterSums {
  static void run(const at::Tensor& gr, const at::Tensor& a, const at::Tensor& y, const at::Tensor& gx,
                  const at::Tensor& ga, const Geometry& g) {
    if ((banded_rotate(BS) || banded_outer(BS)) && bands_pay_off(g)) {
      Rotate<BS>::run(gr, a, gx, g);
      OuterSums<BS>::run(gr, y, ga, g);
      return;
    }
    rotate_back_and_outer_sums<BS>(gr, a, y, gx, ga, g);
  }
};


// ----- tile products: C = A B for b = 32, 48, 64 ----------------------------------------------------------------
// One row at a time, a 64-wide block is a matrix-vector product: every multiply-add loads its own piece of the
// matrix, so loads, not the FMA units, set the pace. Here up to kTileRows rows of C are summed at once in
// kTileRows x NV 16-float registers, so each row of B loaded from L1 serves kTileRows rows (24 accumulators and
// 4 loads in the 32 vector registers of AVX-512 at b = 64). Operands are reached through accessors: A(i, k) a
// float, brow(k) row k of B (NV x 16 contiguous floats), crow(i) row i of C; so q and k are multiplied where they
// lie (strided views of a qkv projection) and transposed operands cost nothing on the A side. The exponential's
// 32-64 wide products run on them too (Mat::mm).
// Batched 64x64 products measured here (a scratch kernel of the same form): 390 of (64 x 64) @ (64 x 64), 2
// threads, 0.76 ms against torch.bmm's 2.7 ms (MKL, which runs a generic path on this AMD CPU); 1 thread 1.46
// against 3.98.
constexpr int kTileRows = 6;

template <int MR, int NV, typename T, typename A, typename BRow, typename CRow>
inline void tile_rows(const A& a, const BRow& brow, const CRow& crow, int64_t i0, int64_t K, bool add) {
  using V = Lanes<16, T>;
  typename V::type acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = add ? V::load(crow(i0 + i) + 16 * j) : typename V::type{};
  for (int64_t k = 0; k < K; ++k) {
    const T* bk = brow(k);
    typename V::type b[NV];
    for (int j = 0; j < NV; ++j) b[j] = V::load(bk + 16 * j);
    for (int i = 0; i < MR; ++i) {
      const T v = a(i0 + i, k);
      for (int j = 0; j < NV; ++j) acc[i][j] += v * b[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) V::store(crow(i0 + i) + 16 * j, acc[i][j]);
}

// C (M x 16 NV) = A (M x K) B (K x 16 NV), or C += A B with `add`. T = float (double: the exponential's rare
// float64 matrices, correct but not tuned).
template <int NV, typename T = float, typename A, typename BRow, typename CRow>
void tile_product(const A& a, const BRow& brow, const CRow& crow, int64_t M, int64_t K, bool add) {
  int64_t i = 0;
  for (; i + kTileRows <= M; i += kTileRows) tile_rows<kTileRows, NV, T>(a, brow, crow, i, K, add);
  switch (M - i) {
    case 5: tile_rows<5, NV, T>(a, brow, crow, i, K, add); break;
    case 4: tile_rows<4, NV, T>(a, brow, crow, i, K, add); break;
    case 3: tile_rows<3, NV, T>(a, brow, crow, i, K, add); break;
    case 2: tile_rows<2, NV, T>(a, brow, crow, i, K, add); break;
    case 1: tile_rows<1, NV, T>(a, brow, crow, i, K, add); break;
    default: break;
  }
}

template <typename F>
void by_tile_width(int64_t width, F&& f) {
  switch (width) {
    case 32: f(std::integral_constant<int, 2>{}); break;
    case 48: f(std::integral_constant<int, 3>{}); break;
    case 64: f(std::integral_constant<int, 4>{}); break;
    default: TORCH_CHECK(false, "liere tile product: width must be 32, 48 or 64, got ", width);
  }
}

// The rows of one role (x, out, grad...) over a list of tensors: for rotation row r = (bp, hp, n), every x row it
// covers in the first tensor, then in the second... (q's then k's: one product of 2B rows per matrix).
struct RowSet {
  std::vector<float*> base;
  std::vector<std::array<int64_t, 3>> strides;
  explicit RowSet(const std::vector<at::Tensor>& ts) {
    for (const auto& t : ts) {
      base.push_back(t.data_ptr<float>());
      strides.push_back(row_strides(t));
    }
  }
  void gather(const Geometry& g, int64_t r, std::vector<float*>& rows) const {
    const int64_t n = r % g.N, bh = r / g.N, bp = bh / g.Hp, hp = bh % g.Hp;
    rows.clear();
    for (size_t t = 0; t < base.size(); ++t)
      for_covered_rows(g, bp, hp, [&](int64_t b, int64_t h) {
        rows.push_back(base[t] + b * strides[t][0] + h * strides[t][1] + n * strides[t][2]);
      });
  }
};

// Asks for the rows of the next rotation row while this one is multiplied. Its rows are one per sample (a jump
// of N x 3HD floats in a qkv projection), which the hardware prefetcher does not foresee.
inline void prefetch_rows(const std::vector<float*>& rows, int64_t floats, bool write) {
  for (float* p : rows)
    for (int64_t f = 0; f < floats; f += 16) {
      if (write)
        __builtin_prefetch(p + f, 1);
      else
        __builtin_prefetch(p + f, 0);
    }
}

// Runs f(r, rows) for every rotation row, in parallel, rows[k] holding the covered rows of sets[k]; the next
// rotation row's rows are prefetched (those of the sets marked in `written` for writing).
template <size_t K, typename F>
void over_row_sets(const Geometry& g, const std::array<const RowSet*, K>& sets, const std::array<bool, K>& written,
                   F&& f) {
  const int64_t floats = g.M * g.bs;
  at::parallel_for(0, g.Bp * g.Hp * g.N, 1, [&](int64_t begin, int64_t end) {
    std::array<std::vector<float*>, K> rows, next;
    for (size_t k = 0; k < K; ++k) sets[k]->gather(g, begin, rows[k]);
    for (int64_t r = begin; r < end; ++r) {
      if (r + 1 < end)
        for (size_t k = 0; k < K; ++k) {
          sets[k]->gather(g, r + 1, next[k]);
          prefetch_rows(next[k], floats, written[k]);
        }
      f(r, rows);
      std::swap(rows, next);
    }
  });
}

template <int NV>
inline void rotate_tile_rows(const float* at, const std::vector<float*>& in, const std::vector<float*>& out,
                             int64_t off, int64_t bs) {
  tile_product<NV>([&](int64_t i, int64_t k) { return in[i][off + k]; }, [&](int64_t k) { return at + k * bs; },
                   [&](int64_t i) { return out[i] + off; }, int64_t(in.size()), bs, false);
}

template <int NV>
inline void outer_sum_tile_rows(const std::vector<float*>& grad, const std::vector<float*>& x, float* ga, int64_t off,
                                int64_t bs) {
  // (b x rows) @ (rows x b): A(i, k) = g_k[i], row k of B = x_k
  tile_product<NV>([&](int64_t i, int64_t k) { return grad[k][off + i]; }, [&](int64_t k) { return x[k] + off; },
                   [&](int64_t i) { return ga + i * bs; }, bs, int64_t(grad.size()), false);
}

// out_m = A_m x_m on every covered row of every x, for blocks of width 32-64 (a holds each A_m transposed).
void rotate_tiles(const std::vector<at::Tensor>& xs, const at::Tensor& a, const std::vector<at::Tensor>& outs,
                  const Geometry& g) {
  const int64_t bs = g.bs;
  const float* ap = a.data_ptr<float>();
  const RowSet in(xs), out(outs);
  by_tile_width(bs, [&](auto nv) {
    over_row_sets<2>(g, {&in, &out}, {false, true}, [&](int64_t r, const auto& rows) {
      for (int64_t m = 0; m < g.M; ++m)
        rotate_tile_rows<decltype(nv)::value>(ap + (r * g.M + m) * bs * bs, rows[0], rows[1], m * bs, bs);
    });
  });
}

// ga[r, m] = sum over the covered rows of every (grad, x) pair of g_m x_m^T, for blocks of width 32-64.
void outer_sum_tiles(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& xs, const at::Tensor& ga,
                     const Geometry& g) {
  const int64_t bs = g.bs;
  float* gap = ga.data_ptr<float>();
  const RowSet gs(grads), in(xs);
  by_tile_width(bs, [&](auto nv) {
    over_row_sets<2>(g, {&gs, &in}, {false, false}, [&](int64_t r, const auto& rows) {
      for (int64_t m = 0; m < g.M; ++m)
        outer_sum_tile_rows<decltype(nv)::value>(rows[0], rows[1], gap + (r * g.M + m) * bs * bs, m * bs, bs);
    });
  });
}

// The backward of y = A x in one pass per matrix, for blocks of width 32-64: gx = A^T g on every row (`a` holds
// A itself: the transposed convention of rotate_tiles) and ga = sum of g x^T over all rows, while the rows of g
// and the matrix are in cache (and A is read once for q and k).
void rotate_back_and_outer_sum_tiles(const std::vector<at::Tensor>& grads, const at::Tensor& a,
                                     const std::vector<at::Tensor>& xs, const std::vector<at::Tensor>& gxs,
                                     const at::Tensor& ga, const Geometry& g) {
  const int64_t bs = g.bs;
  const float* ap = a.data_ptr<float>();
  float* gap = ga.data_ptr<float>();
  const RowSet gs(grads), in(xs), out(gxs);
  by_tile_width(bs, [&](auto nv) {
    over_row_sets<3>(g, {&gs, &in, &out}, {false, false, true}, [&](int64_t r, const auto& rows) {
      for (int64_t m = 0; m < g.M; ++m) {
        const int64_t i = r * g.M + m;
        rotate_tile_rows<decltype(nv)::value>(ap + i * bs * bs, rows[0], rows[2], m * bs, bs);
        outer_sum_tile_rows<decltype(nv)::value>(rows[0], rows[1], gap + i * bs * bs, m * bs, bs);
      }
    });
  });
}

// Checks shared by the list operators: every tensor of the lists shaped like the first x, float32, last stride 1.
Geometry tile_geometry(const std::vector<at::Tensor>& xs, const at::Tensor& a,
                       std::initializer_list<const std::vector<at::Tensor>*> others) {
  TORCH_CHECK(!xs.empty(), "liere tile kernel: no tensors");
  const Geometry g = geometry(xs[0], a);
  TORCH_CHECK(is_tile_width(g.bs), "liere tile kernel: block width must be 32, 48 or 64, got ", g.bs);
  for (const auto* list : others) TORCH_CHECK(list->size() == xs.size(), "liere tile kernel: list sizes differ");
  auto check = [&](const at::Tensor& t) {
    TORCH_CHECK(t.sizes() == xs[0].sizes() && t.stride(3) == 1 && t.scalar_type() == at::kFloat,
                "liere tile kernel: every tensor must be shaped like the first x, float32, last stride 1");
  };
  for (const auto& t : xs) check(t);
  for (const auto* list : others)
    for (const auto& t : *list) check(t);
  return g;
}

void rotate_tiles_op(std::vector<at::Tensor> xs, const at::Tensor& a_transposed, std::vector<at::Tensor> outs) {
  rotate_tiles(xs, a_transposed, outs, tile_geometry(xs, a_transposed, {&outs}));
}

void outer_sum_tiles_op(std::vector<at::Tensor> grads, std::vector<at::Tensor> xs, const at::Tensor& ga) {
  const Geometry g = tile_geometry(xs, ga, {&grads});
  TORCH_CHECK(ga.is_contiguous(), "liere tile kernel: ga must be contiguous");
  outer_sum_tiles(grads, xs, ga, g);
}

void rotate_back_and_outer_sum_tiles_op(std::vector<at::Tensor> grads, const at::Tensor& a, std::vector<at::Tensor> xs,
                                        std::vector<at::Tensor> gxs, const at::Tensor& ga) {
  const Geometry g = tile_geometry(xs, a, {&grads, &gxs});
  TORCH_CHECK(ga.sizes() == a.sizes() && ga.is_contiguous() && ga.scalar_type() == at::kFloat,
              "liere tile kernel: ga must be shaped like a, float32, contiguous");
  rotate_back_and_outer_sum_tiles(grads, a, xs, gxs, ga, g);
}

void rotate_blocks(const at::Tensor& x, const at::Tensor& a_transposed, const at::Tensor& out) {
  const Geometry g = geometry(x, a_transposed);
  TORCH_CHECK(out.sizes() == x.sizes() && out.stride(3) == 1 && out.scalar_type() == at::kFloat,
              "liere block kernel: out must be shaped like x, float32, last stride 1");
  if (is_tile_width(g.bs)) return rotate_tiles({x}, a_transposed, {out}, g);
  by_block_size<Rotate>(g.bs, x, a_transposed, out, g);
}

void block_outer_sums(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& ga) {
  const Geometry g = geometry(x, ga);
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.stride(3) == 1 && grad.scalar_type() == at::kFloat,
              "liere block kernel: grad must be shaped like x, float32, last stride 1");
  if (is_tile_width(g.bs)) return outer_sum_tiles({grad}, {x}, ga, g);
  by_block_size<OuterSums>(g.bs, grad, x, ga, g);
}

// The backward of y = A x given y instead of x: gx = A^T g and ga[r, m] = sum over the rows of r of g_m y_m^T
// (the caller turns the latter into the gradient of A: with A orthogonal, x = A^T y, so g x^T = (g y^T) A).
void rotate_back_and_outer_sums_op(const at::Tensor& grad, const at::Tensor& a, const at::Tensor& y,
                                   const at::Tensor& gx, const at::Tensor& ga) {
  const Geometry g = geometry(grad, a);
  TORCH_CHECK(ga.sizes() == a.sizes() && ga.is_contiguous() && ga.scalar_type() == at::kFloat,
              "liere block kernel: ga must be shaped like a, float32, contiguous");
  for (const at::Tensor* t : {&y, &gx})
    TORCH_CHECK(t->sizes() == grad.sizes() && t->stride(3) == 1 && t->scalar_type() == at::kFloat,
                "liere block kernel: y and gx must be shaped like grad, float32, last stride 1");
  if (is_tile_width(g.bs)) return rotate_back_and_outer_sum_tiles({grad}, a, {y}, {gx}, ga, g);
  by_block_size<RotateBackAndOuterSums>(g.bs, grad, a, y, gx, ga, g);
}

// ----- exponentials of skew-symmetric matrices ------------------------------------------------------------
// Constants as in expm.py: degree-12 Taylor polynomial of B = A / 2^s with rho(B) <= theta (1.5 in float32,
// 0.25 in float64); a float32 matrix needing more than 8 squarings runs in float64; float32 results after 6
// or more squarings get one Newton-Schulz step back onto the orthogonal group.
constexpr int kMaxSquarings = 64;
constexpr int kMaxSquaringsF32 = 8;
constexpr int kPolishFrom = 6;

template <typename T>
struct Taylor {
  static constexpr T c[13] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                              1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600};
};

// N x N row-major matrices, N = 8, 16 (products in registers) or 32, 48, 64 (register tiles); other sizes ran
// no faster than the torch path and are left to it.
template <typename T, int N>
struct Mat {
  static_assert(N == 8 || N == 16 || N == 32 || N == 48 || N == 64, "no exponential kernel for this block size");
  static constexpr int nn = N * N;
  // c = a b (+ c when accumulate); c must not overlap a or b. For N <= 16 the rows of b sit in vector registers
  // and each row of c is one vector sum (9 and 40 ns per float32 product here, against 75 and 800 ns for the
  // same loops left to the auto-vectoriser); wider, six rows of c at a time on register tiles.
  static inline void mm(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c,
                        bool accumulate = false) {
    if constexpr (N >= 32) {
      tile_product<N / 16, T>([&](int64_t i, int64_t k) { return a[i * N + k]; }, [&](int64_t k) { return b + k * N; },
                              [&](int64_t i) { return c + i * N; }, N, N, accumulate);
    } else {
      small_mm(a, b, c, accumulate);
    }
  }
  static inline void small_mm(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c, bool accumulate) {
    using L = Lanes<N, T>;
    typename L::type rows[N];
    for (int k = 0; k < N; ++k) rows[k] = L::load(b + k * N);
    for (int i = 0; i < N; ++i) {
      typename L::type acc = accumulate ? L::load(c + i * N) : typename L::type{};
      for (int k = 0; k < N; ++k) acc += a[i * N + k] * rows[k];
      L::store(c + i * N, acc);
    }
  }
  static inline void transpose(const T* a, T* at) {
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < N; ++j) at[j * N + i] = a[i * N + j];
  }
  static inline T norm1(const T* a) {  // max column sum
    T best = 0;
    for (int j = 0; j < N; ++j) {
      T sum = 0;
      for (int i = 0; i < N; ++i) sum += std::abs(a[i * N + j]);
      best = std::max(best, sum);
    }
    return best;
  }
};

// Everything one matrix's exponential keeps for its backward, in the precision it ran in, and the backward's
// own temporaries (on the heap, one per thread's share of the batch: 13 of them at 64x64 in float64 would be
// 416 kB of a worker thread's stack).
template <typename T, int N>
struct ExpmWork {
  T b[N * N], b2[N * N], b3[N * N], b4[N * N];
  T inner[N * N], mid[N * N], x[N * N];
  T t0[N * N], t1[N * N], t2[N * N];
  T squares[kMaxSquarings][N * N];  // the input of each squaring
  T xt[N * N], step[N * N], b4t[N * N], b2t[N * N], bt[N * N], midt[N * N], innert[N * N];
  T g_mid[N * N], g_inner[N * N], g_b4[N * N], g_b3[N * N], g_b2[N * N], g_b[N * N];
  int s;
};

// Squaring count from the 1-norm, as expm.py's _num_squarings (NaN: none).
template <typename T>
inline int squarings_from(T norm1, T theta) {
  const T v = std::ceil(std::log2(std::max(norm1, T(1e-30)) / theta));
  if (!(v == v)) return 0;
  return static_cast<int>(std::min(std::max(v, T(0)), T(kMaxSquarings)));
}

// exp(a) into w.x, keeping what the backward needs; `a` is read in precision S and computed in T. Returns
// false, having computed nothing past the squaring count, for a float32 matrix that needs float64.
template <typename T, int N, typename S>
bool expm_one(const S* a, ExpmWork<T, N>& w) {
  using m = Mat<T, N>;
  constexpr int d = N, nn = m::nn;
  const T theta = std::is_same<T, float>::value ? T(1.5) : T(0.25);
  const auto& c = Taylor<T>::c;
  for (int e = 0; e < nn; ++e) w.t0[e] = static_cast<T>(a[e]);
  int s = squarings_from(m::norm1(w.t0), theta);
  // Scale, then tighten the bound with |B^4|_1^(1/4) and give back the squarings it makes unnecessary.
  const T down = std::exp2(T(-s));
  for (int e = 0; e < nn; ++e) w.b[e] = w.t0[e] * down;
  m::mm(w.b, w.b, w.b2);
  m::mm(w.b2, w.b2, w.b4);
  const T rho = std::pow(std::max(m::norm1(w.b4), T(1e-30)), T(0.25));
  T kf = std::floor(std::log2(theta / rho));
  int k = (kf == kf) ? static_cast<int>(std::min(std::max(kf, T(0)), T(s))) : 0;
  s -= k;
  w.s = s;
  if (std::is_same<T, float>::value && s > kMaxSquaringsF32) return false;
  if (k) {
    const T up = std::exp2(T(k)), up2 = up * up, up4 = up2 * up2;
    for (int e = 0; e < nn; ++e) {
      w.b[e] *= up;
      w.b2[e] *= up2;
      w.b4[e] *= up4;
    }
  }
  m::mm(w.b2, w.b, w.b3);
  for (int e = 0; e < nn; ++e) {
    w.inner[e] = c[12] * w.b4[e] + c[11] * w.b3[e] + c[10] * w.b2[e] + c[9] * w.b[e];
    w.mid[e] = c[7] * w.b3[e] + c[6] * w.b2[e] + c[5] * w.b[e];
    w.x[e] = c[3] * w.b3[e] + c[2] * w.b2[e] + w.b[e];
  }
  for (int i = 0; i < d; ++i) {
    w.inner[i * d + i] += c[8];
    w.mid[i * d + i] += c[4];
    w.x[i * d + i] += T(1);
  }
  m::mm(w.b4, w.inner, w.mid, true);
  m::mm(w.b4, w.mid, w.x, true);
  for (int i = 0; i < s; ++i) {
    for (int e = 0; e < nn; ++e) w.squares[i][e] = w.x[e];
    m::mm(w.squares[i], w.squares[i], w.x);
  }
  return true;
}

// One Newton-Schulz step, x <- x (3 I - x^T x) / 2, for float32 results after 6 or more squarings.
template <typename T, int N>
void polish(ExpmWork<T, N>& w) {
  if (!std::is_same<T, float>::value || w.s < kPolishFrom) return;
  using m = Mat<T, N>;
  constexpr int nn = m::nn;
  m::transpose(w.x, w.t1);
  m::mm(w.t1, w.x, w.t2);
  m::mm(w.x, w.t2, w.t1);
  for (int e = 0; e < nn; ++e) w.x[e] = T(1.5) * w.x[e] - T(0.5) * w.t1[e];
}

// Reverse mode through the squarings and the polynomial (expm.py's _expm_chunk_backward); g in w.t0 on
// entry, d/da (= g_b 2^-s) written to out.
template <typename T, int N>
void expm_one_backward(ExpmWork<T, N>& w, float* out) {
  using m = Mat<T, N>;
  constexpr int nn = m::nn;
  const auto& c = Taylor<T>::c;
  T* g = w.t0;
  T *xt = w.xt, *step = w.step;
  for (int i = w.s - 1; i >= 0; --i) {  // through x <- x x: g <- g x^T + x^T g
    m::transpose(w.squares[i], xt);
    m::mm(g, xt, step);
    m::mm(xt, g, step, true);
    for (int e = 0; e < nn; ++e) g[e] = step[e];
  }
  T *b4t = w.b4t, *b2t = w.b2t, *bt = w.bt;
  T *g_mid = w.g_mid, *g_inner = w.g_inner, *g_b4 = w.g_b4, *g_b3 = w.g_b3, *g_b2 = w.g_b2, *g_b = w.g_b;
  m::transpose(w.b4, b4t);
  m::transpose(w.b2, b2t);
  m::transpose(w.b, bt);
  m::mm(b4t, g, g_mid);
  m::mm(b4t, g_mid, g_inner);
  T *midt = w.midt, *innert = w.innert;
  m::transpose(w.mid, midt);
  m::transpose(w.inner, innert);
  m::mm(g, midt, g_b4);
  m::mm(g_mid, innert, g_b4, true);
  for (int e = 0; e < nn; ++e) {
    g_b4[e] += c[12] * g_inner[e];
    g_b3[e] = c[3] * g[e] + c[7] * g_mid[e] + c[11] * g_inner[e];
    g_b2[e] = c[2] * g[e] + c[6] * g_mid[e] + c[10] * g_inner[e];
    g_b[e] = g[e] + c[5] * g_mid[e] + c[9] * g_inner[e];
  }
  m::mm(g_b4, b2t, g_b2, true);
  m::mm(b2t, g_b4, g_b2, true);
  m::mm(g_b3, bt, g_b2, true);
  m::mm(b2t, g_b3, g_b, true);
  m::mm(g_b2, bt, g_b, true);
  m::mm(bt, g_b2, g_b, true);
  const T down = std::exp2(T(-w.s));
  for (int e = 0; e < nn; ++e) out[e] = static_cast<float>(g_b[e] * down);
}

template <int N>
void expm_rows(const at::Tensor& a, const at::Tensor* grad, const at::Tensor& out) {
  constexpr int nn = N * N;
  const float* ap = a.data_ptr<float>();
  const float* gp = grad ? grad->data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  const int64_t rows = a.size(0);
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    auto wf = std::make_unique<ExpmWork<float, N>>();
    std::unique_ptr<ExpmWork<double, N>> wd;
    for (int64_t r = begin; r < end; ++r) {
      const float* ar = ap + r * nn;
      float* orow = op + r * nn;
      if (expm_one<float, N, float>(ar, *wf)) {
        if (!gp) {
          polish<float, N>(*wf);
          for (int e = 0; e < nn; ++e) orow[e] = wf->x[e];
        } else {
          for (int e = 0; e < nn; ++e) wf->t0[e] = gp[r * nn + e];
          expm_one_backward<float, N>(*wf, orow);
        }
        continue;
      }
      if (!wd) wd = std::make_unique<ExpmWork<double, N>>();
      expm_one<double, N, float>(ar, *wd);
      if (!gp) {
        for (int e = 0; e < nn; ++e) orow[e] = static_cast<float>(wd->x[e]);
      } else {
        for (int e = 0; e < nn; ++e) wd->t0[e] = gp[r * nn + e];
        expm_one_backward<double, N>(*wd, orow);
      }
    }
  });
}

// Forward (grad == nullptr) or backward of every matrix of a (rows, n, n), n = 8 or 16.
at::Tensor expm_rows_by_size(const at::Tensor& a, const at::Tensor* grad) {
  const int64_t n = a.dim() == 3 && a.size(1) == a.size(2) ? a.size(1) : -1;
  TORCH_CHECK(n == 8 || n == 16 || n == 32 || n == 48 || n == 64,
              "liere expm kernel: expected (rows, n, n) with n = 8, 16, 32, 48 or 64");
  TORCH_CHECK(a.scalar_type() == at::kFloat && a.is_contiguous(), "liere expm kernel: float32, contiguous");
  TORCH_CHECK(!grad || (grad->sizes() == a.sizes() && grad->scalar_type() == at::kFloat && grad->is_contiguous()),
              "liere expm kernel: grad must be shaped like a, float32, contiguous");
  auto out = at::empty_like(a);
  switch (n) {
    case 8: expm_rows<8>(a, grad, out); break;
    case 16: expm_rows<16>(a, grad, out); break;
    case 32: expm_rows<32>(a, grad, out); break;
    case 48: expm_rows<48>(a, grad, out); break;
    default: expm_rows<64>(a, grad, out);
  }
  return out;
}

at::Tensor skew_expm(const at::Tensor& a) { return expm_rows_by_size(a, nullptr); }

at::Tensor skew_expm_backward(const at::Tensor& a, const at::Tensor& grad) { return expm_rows_by_size(a, &grad); }

}  // namespace

TORCH_LIBRARY(liere_cpu_v3, m) {
  m.def("rotate_blocks(Tensor x, Tensor a_transposed, Tensor(a!) out) -> ()", &rotate_blocks);
  m.def("block_outer_sums(Tensor grad, Tensor x, Tensor(a!) ga) -> ()", &block_outer_sums);
  m.def("rotate_tiles(Tensor[] xs, Tensor a_transposed, Tensor(a!)[] outs) -> ()", &rotate_tiles_op);
  m.def("outer_sum_tiles(Tensor[] grads, Tensor[] xs, Tensor(a!) ga) -> ()", &outer_sum_tiles_op);
  m.def("rotate_back_and_outer_sum_tiles(Tensor[] grads, Tensor a, Tensor[] xs, Tensor(a!)[] gxs, Tensor(b!) ga) -> ()",
        &rotate_back_and_outer_sum_tiles_op);
  m.def("rotate_back_and_outer_sums(Tensor grad, Tensor a, Tensor y, Tensor(a!) gx, Tensor(b!) ga) -> ()",
        &rotate_back_and_outer_sums_op);
  m.def("skew_expm(Tensor a) -> Tensor", &skew_expm);
  m.def("skew_expm_backward(Tensor a, Tensor grad) -> Tensor", &skew_expm_backward);
}
