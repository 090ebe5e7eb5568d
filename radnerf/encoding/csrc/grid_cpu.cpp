// Fused forward and backward of the multiresolution grid encoding on the CPU.
//
// Same numbers as radnerf/encoding/grid_plain.py and tiny-cuda-nn's grid.h:
// the per-level constants (scale, table size, row-major strides, hashed or not)
// come from radnerf/encoding/layout.py, so this file only knows how to look up
// and interpolate, not which reference it imitates.
//
// Threads: at::parallel_for is an inline template, so it is only parallel
// because this file is compiled with -fopenmp (see grid_fused.py); it then
// runs on torch's own OpenMP threads (torch.set_num_threads).
//
// Layout: the forward writes a feature-major [L*F, N] buffer and hands torch
// its transpose, a [N, L*F] view with strides (1, N): each level then writes F
// sequential streams, where [N, L*F] rows would need a transpose pass (about a
// third of the forward on the 2D grids). Torch ops take the strided view as it
// is (a Linear layer's GEMM reads it transposed, no copy). The backward reads
// a gradient in that layout directly and transposes a row-major one once.
//
// Work split, chosen by measurement on a 2-core AVX-512 machine:
// - forward: one level at a time, points split across threads in whole
//   chunks, so a level's table stays in cache while every point reads it;
// - backward: each thread owns whole levels (dealt round-robin), so table-gradient
//   scatters never race and need no atomics or per-thread copies; the thread
//   zeroes its levels' gradient slice right before scattering into it;
// - plain scalar loads: AVX-512 gathers were slower for 8-corner lookups.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <mutex>
#include <vector>

#include "grid_kernels.h"

namespace {

using radnerf_grid::Level;

std::vector<Level> make_levels(const at::Tensor& scales, const at::Tensor& offsets,
                               const at::Tensor& sizes, const at::Tensor& strides,
                               const at::Tensor& hashed, double pos_offset) {
  const int64_t L = scales.size(0);
  const int64_t D = strides.size(1);
  auto sc = scales.accessor<double, 1>();
  auto of = offsets.accessor<int64_t, 1>();
  auto sz = sizes.accessor<int64_t, 1>();
  auto st = strides.accessor<int64_t, 2>();
  auto hs = hashed.accessor<bool, 1>();
  std::vector<Level> levels(L);
  for (int64_t l = 0; l < L; ++l) {
    Level& lv = levels[l];
    lv.scale = sc[l];
    lv.offset = of[l];
    lv.size = (uint32_t)sz[l];
    lv.hashed = hs[l];
    TORCH_CHECK(!lv.hashed || (lv.size & (lv.size - 1)) == 0,
                "fused grid: hashed levels must have power-of-two tables");
    for (int64_t d = 0; d < 7; ++d) lv.strides[d] = d < D ? (uint32_t)st[l][d] : 0u;
    radnerf_grid::init_level(lv, pos_offset);
  }
  return levels;
}

// A reusable scratch allocation: the dimension-major points and the
// level-major copies of row-major output gradients are rebuilt every call, and a fresh
// multi-megabyte buffer per call costs page faults comparable to the work.
class Scratch {
 public:
  void* get(size_t bytes) {
    if (!lock_.try_lock()) {  // another call is using it: use a private buffer
      own_.assign(bytes, 0);
      return own_.data();
    }
    locked_ = true;
    if (shared_.size() < bytes) shared_.resize(bytes);
    return shared_.data();
  }
  ~Scratch() {
    if (locked_) lock_.unlock();
  }

 private:
  static std::mutex lock_;
  static std::vector<char> shared_;
  std::vector<char> own_;
  bool locked_ = false;
};
std::mutex Scratch::lock_;
std::vector<char> Scratch::shared_;

constexpr int64_t kTransposeBlock = 64;

// lmaj[l, b, f] = rows[b, l*F + f] for b in [p0, p1): a row-major output
// gradient to level-major slabs, in blocks of points (measured faster than
// reading the rows with a stride in the level loop, which pulls every row's
// cache lines once per level).
#if defined(__AVX512F__)
// r[j] lane k <- r[k] lane j, for 64-bit lanes.
inline void transpose_8x8_epi64(__m512i r[8]) {
  __m512i t[8], u[8];
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = _mm512_unpacklo_epi64(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_epi64(r[2 * k], r[2 * k + 1]);
  }
  for (int k = 0; k < 2; ++k) {
    u[4 * k + 0] = _mm512_shuffle_i64x2(t[4 * k + 0], t[4 * k + 2], 0x88);
    u[4 * k + 1] = _mm512_shuffle_i64x2(t[4 * k + 1], t[4 * k + 3], 0x88);
    u[4 * k + 2] = _mm512_shuffle_i64x2(t[4 * k + 0], t[4 * k + 2], 0xDD);
    u[4 * k + 3] = _mm512_shuffle_i64x2(t[4 * k + 1], t[4 * k + 3], 0xDD);
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm512_shuffle_i64x2(u[k], u[k + 4], 0x88);
    r[k + 4] = _mm512_shuffle_i64x2(u[k], u[k + 4], 0xDD);
  }
}
#endif

// rows[b * row_stride + l*F + f]: row_stride is L*F for a contiguous gradient,
// more for a column slice of a wider one (the gradient of a torch.cat).
template <typename scalar_t, int F>
void rows_to_level_major(const scalar_t* rows, int64_t row_stride, scalar_t* lmaj, int64_t N,
                         int64_t L, int64_t p0, int64_t p1) {
#if defined(__AVX512F__)
  // 8-byte entries (two floats: RAD-NeRF's grids) and L a multiple of 8: each
  // 8 rows x 8 levels block is one 8x8 transpose of 64-bit lanes in
  // registers (1.3-1.4x faster than the scalar copy below, measured here).
  if (sizeof(scalar_t) * F == 8 && L % 8 == 0) {
    for (; p0 + 8 <= p1; p0 += 8)
      for (int64_t h = 0; h < L; h += 8) {
        __m512i r[8];
        for (int k = 0; k < 8; ++k)
          r[k] = _mm512_loadu_si512((const void*)(rows + (p0 + k) * row_stride + h * F));
        transpose_8x8_epi64(r);
        for (int j = 0; j < 8; ++j)
          _mm512_storeu_si512((void*)(lmaj + ((h + j) * N + p0) * F), r[j]);
      }
  }
#endif
  for (int64_t b0 = p0; b0 < p1; b0 += kTransposeBlock) {
    const int64_t b1 = std::min(p1, b0 + kTransposeBlock);
    for (int64_t l = 0; l < L; ++l) {
      const scalar_t* src = rows + b0 * row_stride + l * F;
      scalar_t* dst = lmaj + (l * N + b0) * F;
      for (int64_t b = 0; b < b1 - b0; ++b)
        for (int f = 0; f < F; ++f) dst[b * F + f] = src[b * row_stride + f];
    }
  }
}

// Threads split points in whole chunks, so a thread's last chunk never reads
// dimension-major points that another thread is still writing.
template <typename Fn>
void parallel_chunks(int64_t N, const Fn& fn) {
  const int64_t chunks = (N + radnerf_grid::kChunk - 1) / radnerf_grid::kChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    fn(c0 * radnerf_grid::kChunk, std::min(N, c1 * radnerf_grid::kChunk));
  });
}

// out: [L*F, N] feature-major (see the top of the file).
template <typename scalar_t, int D, int F>
void forward_impl(const scalar_t* x, const scalar_t* table, scalar_t* out, int64_t N,
                  const std::vector<Level>& levels, scalar_t pos_offset, bool zero_oob) {
  const int64_t L = (int64_t)levels.size();
  const int64_t S = radnerf_grid::padded_points(N);
  // The dimension-major copy of the points ([D, S]).
  Scratch scratch;
  scalar_t* xt = (scalar_t*)scratch.get(sizeof(scalar_t) * (size_t)(D * S));
  // One parallel region: each thread walks all levels over its own points, so
  // no thread waits for the other at level boundaries (on a shared machine a
  // descheduled partner would stall a barrier), and both still read the same
  // level's table at about the same time.
  parallel_chunks(N, [&](int64_t p0, int64_t p1) {
    radnerf_grid::points_dim_major<scalar_t, D>(x, xt, S, N, p0, p1);
    for (int64_t l = 0; l < L; ++l) {
      const Level& lv = levels[l];
      const scalar_t* tl = table + lv.offset * F;
      scalar_t* o = out + l * F * N;
      if (lv.hashed) {
        radnerf_grid::forward_level<scalar_t, D, F, true>(xt, S, tl, o, N, p0, p1, lv, pos_offset,
                                                          zero_oob);
      } else {
        radnerf_grid::forward_level<scalar_t, D, F, false>(xt, S, tl, o, N, p0, p1, lv, pos_offset,
                                                           zero_oob);
      }
    }
  });
}

// grad_out: [N, L*F] output gradients, row-major with row stride row_stride
// (rows_major), or, like the forward's output, feature-major ([L*F, N] in
// memory; what a Linear layer's backward returns for such an input).
template <typename scalar_t, int D, int F>
void backward_impl(const scalar_t* grad_out, bool rows_major, int64_t row_stride, const scalar_t* x,
                   const scalar_t* table, scalar_t* grad_table, scalar_t* grad_x, int64_t N,
                   const std::vector<Level>& levels, scalar_t pos_offset, bool zero_oob) {
  const int64_t L = (int64_t)levels.size();
  const int nthreads = std::max(1, (int)std::min<int64_t>(at::get_num_threads(), L));
  const int64_t S = radnerf_grid::padded_points(N);
  Scratch scratch;
  const int64_t gsize = rows_major ? L * N * F : 0;
  // Input gradients: one dimension-major [D, S] buffer per thread (a thread
  // owns levels, not points), summed at the end; only when asked for.
  const int64_t psize = grad_x ? (int64_t)nthreads * D * S : 0;
  scalar_t* gmaj = (scalar_t*)scratch.get(sizeof(scalar_t) * (size_t)(gsize + D * S + psize));
  scalar_t* xt = gmaj + gsize;
  scalar_t* partial = xt + D * S;
  // Level l's output gradients: a level-major [N, F] slab copied from rows, or
  // the F feature streams of a feature-major gradient read in place.
  const scalar_t* gbase = rows_major ? gmaj : grad_out;
  const int64_t glevel = rows_major ? N * F : F * N;
  const int64_t gstride = rows_major ? F : 1;
  const int64_t gfeat = rows_major ? 1 : N;
  // Level-major output gradients (from rows), dimension-major points and
  // zeroed input-gradient buffers (padding included), split by points; the
  // level loop below needs all of them.
  parallel_chunks(N, [&](int64_t p0, int64_t p1) {
    if (rows_major) rows_to_level_major<scalar_t, F>(grad_out, row_stride, gmaj, N, L, p0, p1);
    radnerf_grid::points_dim_major<scalar_t, D>(x, xt, S, N, p0, p1);
    if (grad_x) {
      const int64_t end = p1 == N ? S : p1;
      for (int64_t r = 0; r < (int64_t)nthreads * D; ++r)
        std::fill(partial + r * S + p0, partial + r * S + end, (scalar_t)0);
    }
  });
  at::parallel_for(0, nthreads, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      scalar_t* gx = grad_x ? partial + t * D * S : nullptr;
      // Levels dealt round-robin, finest first, rather than taken from a shared queue: which
      // levels a partial input gradient sums, and in what order, must not depend on timing, or
      // the same training run gives other numbers each time it runs (and a resumed run drifts).
      for (int64_t q = t; q < L; q += nthreads) {
        const int64_t l = L - 1 - q;
        const Level& lv = levels[l];
        const scalar_t* g = gbase + l * glevel;
        if (lv.hashed) {
          radnerf_grid::backward_level<scalar_t, D, F, true>(
              g, gstride, gfeat, xt, S, table + lv.offset * F, grad_table + lv.offset * F, gx, S, N, lv,
              pos_offset, zero_oob);
        } else {
          radnerf_grid::backward_level<scalar_t, D, F, false>(
              g, gstride, gfeat, xt, S, table + lv.offset * F, grad_table + lv.offset * F, gx, S, N, lv,
              pos_offset, zero_oob);
        }
      }
    }
  });

  if (grad_x) {
    parallel_chunks(N, [&](int64_t p0, int64_t p1) {
      for (int64_t b = p0; b < p1; ++b)
        for (int d = 0; d < D; ++d) {
          scalar_t s = 0;
          for (int t = 0; t < nthreads; ++t) s += partial[((int64_t)t * D + d) * S + b];
          grad_x[b * D + d] = s;
        }
    });
  }
}

#define RADNERF_DISPATCH_F(F_VALUE, ...)                                      \
  switch (F_VALUE) {                                                          \
    case 1: { constexpr int F = 1; __VA_ARGS__(); break; }                    \
    case 2: { constexpr int F = 2; __VA_ARGS__(); break; }                    \
    case 4: { constexpr int F = 4; __VA_ARGS__(); break; }                    \
    case 8: { constexpr int F = 8; __VA_ARGS__(); break; }                    \
    default: TORCH_CHECK(false, "fused grid: level_dim must be 1, 2, 4 or 8"); \
  }

#define RADNERF_DISPATCH_D(D_VALUE, ...)                                 \
  switch (D_VALUE) {                                                     \
    case 2: { constexpr int D = 2; __VA_ARGS__(); break; }               \
    case 3: { constexpr int D = 3; __VA_ARGS__(); break; }               \
    default: TORCH_CHECK(false, "fused grid: input_dim must be 2 or 3"); \
  }

void check_inputs(const at::Tensor& x, const at::Tensor& params) {
  TORCH_CHECK(x.device().is_cpu() && params.device().is_cpu(), "fused grid: CPU tensors only");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "fused grid: x must be a contiguous [N, D]");
  TORCH_CHECK(params.dim() == 1 && params.is_contiguous(), "fused grid: params must be flat");
  TORCH_CHECK(x.scalar_type() == params.scalar_type(), "fused grid: x and params dtypes differ");
}

}  // namespace

// x: [N, D] in [0, 1]; params: [P]; returns [N, L * F] as the transpose of a
// contiguous [L * F, N] buffer (strides (1, N)).
at::Tensor grid_forward(const at::Tensor& x, const at::Tensor& params, const at::Tensor& scales,
                        const at::Tensor& offsets, const at::Tensor& sizes,
                        const at::Tensor& strides, const at::Tensor& hashed, int64_t level_dim,
                        double pos_offset, bool zero_oob) {
  check_inputs(x, params);
  const auto levels = make_levels(scales, offsets, sizes, strides, hashed, pos_offset);
  const int64_t N = x.size(0);
  const int64_t L = (int64_t)levels.size();
  at::Tensor out = at::empty({L * level_dim, N}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "grid_forward", [&] {
    RADNERF_DISPATCH_D(x.size(1), [&] {
      RADNERF_DISPATCH_F(level_dim, [&] {
        forward_impl<scalar_t, D, F>(x.data_ptr<scalar_t>(), params.data_ptr<scalar_t>(),
                                     out.data_ptr<scalar_t>(), N, levels, (scalar_t)pos_offset,
                                     zero_oob);
      });
    });
  });
  return out.t();
}

// grad_out: [N, L * F], feature-major (strides (1, N), the forward's layout)
// or with unit column stride (row-major, also a column slice of a wider
// tensor); anything else is made contiguous first. grad_params: [P], overwritten (every level is zeroed
// then scattered into); returns [N, D] input gradients, or an empty tensor
// when need_input_grad is false.
at::Tensor grid_backward(const at::Tensor& grad_out, const at::Tensor& x,
                         const at::Tensor& params, at::Tensor grad_params,
                         const at::Tensor& scales, const at::Tensor& offsets,
                         const at::Tensor& sizes, const at::Tensor& strides,
                         const at::Tensor& hashed, int64_t level_dim, double pos_offset,
                         bool zero_oob, bool need_input_grad) {
  check_inputs(x, params);
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.scalar_type() == x.scalar_type(),
              "fused grid: grad_out must be [N, L * F] of the input dtype");
  const int64_t N = x.size(0);
  TORCH_CHECK(grad_out.size(0) == N, "fused grid: grad_out and x have different lengths");
  const bool feature_major = N > 1 && grad_out.stride(0) == 1 && grad_out.stride(1) == N;
  const bool row_slice = !feature_major && grad_out.stride(1) == 1 &&
                         grad_out.stride(0) >= grad_out.size(1);
  const at::Tensor g = feature_major || row_slice ? grad_out : grad_out.contiguous();
  TORCH_CHECK(grad_params.is_contiguous() && grad_params.numel() == params.numel(),
              "fused grid: grad_params must be contiguous and as long as params");
  const auto levels = make_levels(scales, offsets, sizes, strides, hashed, pos_offset);
  TORCH_CHECK(grad_out.size(1) == (int64_t)levels.size() * level_dim,
              "fused grid: grad_out must have L * F columns");
  at::Tensor grad_x = need_input_grad ? at::empty_like(x) : at::empty({0}, x.options());
  // Entries past the last level (none today) would otherwise keep stale values.
  const int64_t used = (levels.back().offset + levels.back().size) * level_dim;
  if (used < grad_params.numel()) grad_params.narrow(0, used, grad_params.numel() - used).zero_();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "grid_backward", [&] {
    RADNERF_DISPATCH_D(x.size(1), [&] {
      RADNERF_DISPATCH_F(level_dim, [&] {
        backward_impl<scalar_t, D, F>(
            g.data_ptr<scalar_t>(), !feature_major, feature_major ? 0 : g.stride(0),
            x.data_ptr<scalar_t>(),
            params.data_ptr<scalar_t>(),
            grad_params.data_ptr<scalar_t>(),
            need_input_grad ? grad_x.data_ptr<scalar_t>() : nullptr, N, levels,
            (scalar_t)pos_offset, zero_oob);
      });
    });
  });
  return grad_x;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("grid_forward", &grid_forward, "fused grid encoding forward (CPU)");
  m.def("grid_backward", &grid_backward, "fused grid encoding backward (CPU)");
}
