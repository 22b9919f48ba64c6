// Block rotations of queries and keys on the CPU: x' = A x on every b-channel block of every row, in one pass.
//
// The eager alternative packs q and k into a (matrices x rows x b) buffer for one `bmm` and unpacks the
// result: five passes over q and k forward and ten backward, where this reads each input once and writes
// each output once. Compiled on first use by liere/ops/cpu_kernel.py; see that file for the layout contract.
//
// Layouts (all float32):
//   x, out, g : logical (B, H, N, D) views with any strides, the last one 1;
//   a         : (Bp, Hp, N, M, b, b) contiguous, Bp in {1, B}, Hp in {1, H}; a rotation row (bp, hp, n)
//               covers every x row (b, h) it broadcasts to.
// `rotate_blocks` takes each matrix TRANSPOSED (a[..., j, i] = A[i, j]) so that its inner loop runs over
// contiguous memory: out_i = sum_j A_ij x_j = sum_j a[j, i] x_j. Pass R^T for R x, and R itself for R^T g.
// `block_outer_sums` writes ga[r, m] = sum over the x rows of row r of g_m x_m^T (the gradient of A).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

namespace {

constexpr int kMaxBlock = 32;

struct Geometry {
  int64_t B, H, N, Bp, Hp, M;
  int bs;
};

Geometry geometry(const at::Tensor& x, const at::Tensor& a) {
  TORCH_CHECK(x.dim() == 4 && a.dim() == 6, "liere block kernel: expected x (B, H, N, D), a (Bp, Hp, N, M, b, b)");
  TORCH_CHECK(x.scalar_type() == at::kFloat && a.scalar_type() == at::kFloat, "liere block kernel: float32 only");
  TORCH_CHECK(x.stride(3) == 1 && a.is_contiguous(), "liere block kernel: x's last stride must be 1, a contiguous");
  Geometry g{x.size(0), x.size(1), x.size(2), a.size(0), a.size(1), a.size(3), static_cast<int>(a.size(4))};
  TORCH_CHECK(g.bs >= 1 && g.bs <= kMaxBlock && a.size(5) == g.bs, "liere block kernel: block size 1..32");
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
template <int BS>
struct Lanes {
  typedef float type __attribute__((vector_size(BS * sizeof(float))));
  static inline type load(const float* p) {
    type v;
    std::memcpy(&v, p, sizeof(type));
    return v;
  }
  static inline void store(float* p, const type& v) { std::memcpy(p, &v, sizeof(type)); }
};

constexpr bool is_lane_width(int bs) { return bs == 4 || bs == 8 || bs == 16; }

// out_m = A_m x_m for one row, A_m given transposed (rows of `a` are A's columns).
template <int BS>
inline void rotate_row(const float* a, const float* x, float* out, int64_t M, int bs) {
  if constexpr (is_lane_width(BS)) {
    using L = Lanes<BS>;
    for (int64_t m = 0; m < M; ++m, a += BS * BS, x += BS, out += BS) {
      typename L::type acc = L::load(a) * x[0];
      for (int j = 1; j < BS; ++j) acc += L::load(a + j * BS) * x[j];
      L::store(out, acc);
    }
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
    using L = Lanes<BS>;
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

// BS > 0: the block size is a compile-time constant (unrolled, vectorised); BS == 0: any size up to 32.
template <int BS>
void rotate_rows(const at::Tensor& x, const at::Tensor& a, const at::Tensor& out, const Geometry& g) {
  const int bs = BS > 0 ? BS : g.bs;
  const float* xp = x.data_ptr<float>();
  const float* ap = a.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t xs0 = x.stride(0), xs1 = x.stride(1), xs2 = x.stride(2);
  const int64_t os0 = out.stride(0), os1 = out.stride(1), os2 = out.stride(2);
  // Row-major over x: each (b, h, n) row of D floats is read once, contiguously, with the row's M matrices
  // (M b^2 floats, a few KB) hot in L1 across the rows a rotation row covers.
  at::parallel_for(0, g.Bp * g.Hp * g.N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r % g.N, hp = (r / g.N) % g.Hp, bp = r / (g.N * g.Hp);
      const float* ar = ap + r * g.M * bs * bs;
      for_covered_rows(g, bp, hp, [&](int64_t b, int64_t h) {
        rotate_row<BS>(ar, xp + b * xs0 + h * xs1 + n * xs2, op + b * os0 + h * os1 + n * os2, g.M, bs);
      });
    }
  });
}

template <int BS>
void outer_sums(const at::Tensor& gr, const at::Tensor& x, const at::Tensor& ga, const Geometry& g) {
  const int bs = BS > 0 ? BS : g.bs;
  const float* gp = gr.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  float* gap = ga.data_ptr<float>();
  const int64_t gs0 = gr.stride(0), gs1 = gr.stride(1), gs2 = gr.stride(2);
  const int64_t xs0 = x.stride(0), xs1 = x.stride(1), xs2 = x.stride(2);
  at::parallel_for(0, g.Bp * g.Hp * g.N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r % g.N, hp = (r / g.N) % g.Hp, bp = r / (g.N * g.Hp);
      // The sums go straight into ga's M matrices of this row (a few KB, hot in L1), x and g read row by row.
      float* __restrict__ gar = gap + r * g.M * bs * bs;
      for (int64_t e = 0; e < g.M * bs * bs; ++e) gar[e] = 0.f;
      for_covered_rows(g, bp, hp, [&](int64_t b, int64_t h) {
        add_outer_row<BS>(gp + b * gs0 + h * gs1 + n * gs2, xp + b * xs0 + h * xs1 + n * xs2, gar, g.M, bs);
      });
    }
  });
}

template <template <int> class Kernel, typename... Args>
void by_block_size(int bs, Args&&... args) {
  switch (bs) {
    case 3: Kernel<3>::run(args...); break;
    case 4: Kernel<4>::run(args...); break;
    case 6: Kernel<6>::run(args...); break;
    case 8: Kernel<8>::run(args...); break;
    case 16: Kernel<16>::run(args...); break;
    default: Kernel<0>::run(args...);
  }
}

template <int BS>
struct Rotate {
  static void run(const at::Tensor& x, const at::Tensor& a, const at::Tensor& out, const Geometry& g) {
    rotate_rows<BS>(x, a, out, g);
  }
};

template <int BS>
struct OuterSums {
  static void run(const at::Tensor& gr, const at::Tensor& x, const at::Tensor& ga, const Geometry& g) {
    outer_sums<BS>(gr, x, ga, g);
  }
};

void rotate_blocks(const at::Tensor& x, const at::Tensor& a_transposed, const at::Tensor& out) {
  const Geometry g = geometry(x, a_transposed);
  TORCH_CHECK(out.sizes() == x.sizes() && out.stride(3) == 1 && out.scalar_type() == at::kFloat,
              "liere block kernel: out must be shaped like x, float32, last stride 1");
  by_block_size<Rotate>(g.bs, x, a_transposed, out, g);
}

void block_outer_sums(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& ga) {
  const Geometry g = geometry(x, ga);
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.stride(3) == 1 && grad.scalar_type() == at::kFloat,
              "liere block kernel: grad must be shaped like x, float32, last stride 1");
  by_block_size<OuterSums>(g.bs, grad, x, ga, g);
}

}  // namespace

TORCH_LIBRARY(liere_cpu_v1, m) {
  m.def("rotate_blocks(Tensor x, Tensor a_transposed, Tensor(a!) out) -> ()", &rotate_blocks);
  m.def("block_outer_sums(Tensor grad, Tensor x, Tensor(a!) ga) -> ()", &block_outer_sums);
}
