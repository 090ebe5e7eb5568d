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
// Work split, chosen by measurement on a 2-core AVX-512 machine:
// - forward: one level at a time, points split across threads in whole
//   chunks, so a level's table stays in cache while every point reads it;
//   each level fills a contiguous slab that the thread interleaves into its
//   [N, L*F] rows at the end (and the backward de-interleaves the output
//   gradient the same way);
// - backward: each thread owns whole levels (dynamic queue), so table-gradient
//   scatters never race and need no atomics or per-thread copies; the thread
//   zeroes its levels' gradient slice right before scattering into it;
// - plain scalar loads: AVX-512 gathers were slower for 8-corner lookups.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
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

// A reusable scratch allocation: level-major copies of the outputs and output
// gradients ([L, N, F]) are rebuilt every call, and a fresh multi-megabyte
// buffer per call costs page faults comparable to the work itself.
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

// out[b, l*F + f] = lmaj[l, b, f] for b in [p0, p1). Row by row: the writes
// are sequential and the L reads are L sequential streams, which measured
// faster than blocked copies here (the reverse direction below is the other
// way round).
template <typename scalar_t, int F>
void level_major_to_rows(const scalar_t* lmaj, scalar_t* out, int64_t N, int64_t L, int64_t p0,
                         int64_t p1) {
  for (int64_t b = p0; b < p1; ++b) {
    scalar_t* dst = out + b * L * F;
    for (int64_t l = 0; l < L; ++l) {
      const scalar_t* src = lmaj + (l * N + b) * F;
      for (int f = 0; f < F; ++f) dst[l * F + f] = src[f];
    }
  }
}

// lmaj[l, b, f] = rows[b, l*F + f] for b in [p0, p1).
template <typename scalar_t, int F>
void rows_to_level_major(const scalar_t* rows, scalar_t* lmaj, int64_t N, int64_t L, int64_t p0,
                         int64_t p1) {
  for (int64_t b0 = p0; b0 < p1; b0 += kTransposeBlock) {
    const int64_t b1 = std::min(p1, b0 + kTransposeBlock);
    for (int64_t l = 0; l < L; ++l) {
      const scalar_t* src = rows + b0 * L * F + l * F;
      scalar_t* dst = lmaj + (l * N + b0) * F;
      for (int64_t b = 0; b < b1 - b0; ++b)
        for (int f = 0; f < F; ++f) dst[b * F + f] = src[b * L * F + f];
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

template <typename scalar_t, int D, int F>
void forward_impl(const scalar_t* x, const scalar_t* table, scalar_t* out, int64_t N,
                  const std::vector<Level>& levels, scalar_t pos_offset, bool zero_oob) {
  const int64_t L = (int64_t)levels.size();
  const int64_t S = radnerf_grid::padded_points(N);
  // Each level writes a contiguous [N, F] slab (writing straight into the
  // [N, L*F] rows touches a new cache line per point and level: measured 1.7x
  // slower overall), then each thread interleaves its points' slabs into rows.
  // The dimension-major copy of the points ([D, S]) lives in the same scratch.
  Scratch scratch;
  scalar_t* lmaj = (scalar_t*)scratch.get(sizeof(scalar_t) * (size_t)(L * N * F + D * S));
  scalar_t* xt = lmaj + L * N * F;
  // One parallel region: each thread walks all levels over its own points, so
  // no thread waits for the other at level boundaries (on a shared machine a
  // descheduled partner would stall a barrier), and both still read the same
  // level's table at about the same time.
  parallel_chunks(N, [&](int64_t p0, int64_t p1) {
    radnerf_grid::points_dim_major<scalar_t, D>(x, xt, S, N, p0, p1);
    for (int64_t l = 0; l < L; ++l) {
      const Level& lv = levels[l];
      const scalar_t* tl = table + lv.offset * F;
      scalar_t* slab = lmaj + l * N * F;
      if (lv.hashed) {
        radnerf_grid::forward_level<scalar_t, D, F, true>(xt, S, tl, slab, F, p0, p1, lv,
                                                          pos_offset, zero_oob);
      } else {
        radnerf_grid::forward_level<scalar_t, D, F, false>(xt, S, tl, slab, F, p0, p1, lv,
                                                           pos_offset, zero_oob);
      }
    }
    level_major_to_rows<scalar_t, F>(lmaj, out, N, L, p0, p1);
  });
}

template <typename scalar_t, int D, int F>
void backward_impl(const scalar_t* grad_out, const scalar_t* x, const scalar_t* table,
                   scalar_t* grad_table, scalar_t* grad_x, int64_t N,
                   const std::vector<Level>& levels, scalar_t pos_offset, bool zero_oob) {
  const int64_t L = (int64_t)levels.size();
  const int nthreads = std::max(1, (int)std::min<int64_t>(at::get_num_threads(), L));
  const int64_t S = radnerf_grid::padded_points(N);
  Scratch scratch;
  scalar_t* gmaj = (scalar_t*)scratch.get(sizeof(scalar_t) * (size_t)(L * N * F + D * S));
  scalar_t* xt = gmaj + L * N * F;
  // Level-major output gradients and dimension-major points, split by points;
  // the level loop below needs all of both.
  parallel_chunks(N, [&](int64_t p0, int64_t p1) {
    rows_to_level_major<scalar_t, F>(grad_out, gmaj, N, L, p0, p1);
    radnerf_grid::points_dim_major<scalar_t, D>(x, xt, S, N, p0, p1);
  });
  // Input gradients: one dimension-major [D, S] buffer per thread (a thread
  // owns levels, not points), summed at the end. Only allocated when asked for.
  std::vector<scalar_t> partial;
  if (grad_x) partial.assign((size_t)nthreads * D * S, (scalar_t)0);
  std::atomic<int64_t> next_level{0};

  at::parallel_for(0, nthreads, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      scalar_t* gx = grad_x ? partial.data() + (size_t)t * D * S : nullptr;
      // Finest levels first: they cost the most, so the queue ends on cheap ones.
      for (int64_t q = next_level.fetch_add(1); q < L; q = next_level.fetch_add(1)) {
        const int64_t l = L - 1 - q;
        const Level& lv = levels[l];
        const scalar_t* g = gmaj + l * N * F;
        if (lv.hashed) {
          radnerf_grid::backward_level<scalar_t, D, F, true>(
              g, F, xt, S, table + lv.offset * F, grad_table + lv.offset * F, gx, S, N, lv,
              pos_offset, zero_oob);
        } else {
          radnerf_grid::backward_level<scalar_t, D, F, false>(
              g, F, xt, S, table + lv.offset * F, grad_table + lv.offset * F, gx, S, N, lv,
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
          for (int t = 0; t < nthreads; ++t) s += partial[((size_t)t * D + d) * S + b];
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

// x: [N, D] in [0, 1]; params: [P]; returns [N, L * F].
at::Tensor grid_forward(const at::Tensor& x, const at::Tensor& params, const at::Tensor& scales,
                        const at::Tensor& offsets, const at::Tensor& sizes,
                        const at::Tensor& strides, const at::Tensor& hashed, int64_t level_dim,
                        double pos_offset, bool zero_oob) {
  check_inputs(x, params);
  const auto levels = make_levels(scales, offsets, sizes, strides, hashed, pos_offset);
  const int64_t N = x.size(0);
  const int64_t L = (int64_t)levels.size();
  at::Tensor out = at::empty({N, L * level_dim}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "grid_forward", [&] {
    RADNERF_DISPATCH_D(x.size(1), [&] {
      RADNERF_DISPATCH_F(level_dim, [&] {
        forward_impl<scalar_t, D, F>(x.data_ptr<scalar_t>(), params.data_ptr<scalar_t>(),
                                     out.data_ptr<scalar_t>(), N, levels, (scalar_t)pos_offset,
                                     zero_oob);
      });
    });
  });
  return out;
}

// grad_out: [N, L * F]; grad_params: [P], overwritten (every level is zeroed
// then scattered into); returns [N, D] input gradients, or an empty tensor
// when need_input_grad is false.
at::Tensor grid_backward(const at::Tensor& grad_out, const at::Tensor& x,
                         const at::Tensor& params, at::Tensor grad_params,
                         const at::Tensor& scales, const at::Tensor& offsets,
                         const at::Tensor& sizes, const at::Tensor& strides,
                         const at::Tensor& hashed, int64_t level_dim, double pos_offset,
                         bool zero_oob, bool need_input_grad) {
  check_inputs(x, params);
  TORCH_CHECK(grad_out.is_contiguous() && grad_out.scalar_type() == x.scalar_type(),
              "fused grid: grad_out must be contiguous and of the input dtype");
  TORCH_CHECK(grad_params.is_contiguous() && grad_params.numel() == params.numel(),
              "fused grid: grad_params must be contiguous and as long as params");
  const auto levels = make_levels(scales, offsets, sizes, strides, hashed, pos_offset);
  const int64_t N = x.size(0);
  at::Tensor grad_x = need_input_grad ? at::empty_like(x) : at::empty({0}, x.options());
  // Entries past the last level (none today) would otherwise keep stale values.
  const int64_t used = (levels.back().offset + levels.back().size) * level_dim;
  if (used < grad_params.numel()) grad_params.narrow(0, used, grad_params.numel() - used).zero_();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "grid_backward", [&] {
    RADNERF_DISPATCH_D(x.size(1), [&] {
      RADNERF_DISPATCH_F(level_dim, [&] {
        backward_impl<scalar_t, D, F>(
            grad_out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), params.data_ptr<scalar_t>(),
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
