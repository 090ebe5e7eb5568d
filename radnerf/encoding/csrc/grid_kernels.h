// Per-level loops of the fused CPU grid encoding; no torch dependency, so the
// same code can be timed in a standalone program.
//
// Numbers match tiny-cuda-nn's grid.h: position fmaf(scale, x, 0.5), weights
// multiplied dimension by dimension in order, corners summed in tcnn's order
// (bit d of the corner number picks the upper vertex in dimension d). The
// per-level constants come from radnerf/encoding/layout.py.
//
// Speed notes (2-core AVX-512 VM, 48 MB shared L3):
// - a level's table is only cache-resident if every point visits it before the
//   next level starts, so all loops are "level outside, points inside";
// - points come in chunks of kChunk. A chunk's corner indices and weights are
//   computed with fixed-length loops over the chunk (SIMD across points) from
//   a dimension-major copy of the points, sharing partial products and hashes
//   between corners (exact: the same multiplications in the same order);
// - the next chunk is located before the current one is gathered or
//   scattered, and its cache lines are prefetched one point at a time inside
//   that loop: an even trickle of prefetches keeps many table misses in flight
//   without a burst that fills every line-fill buffer at once;
// - scalar loads beat AVX-512 gathers for the 4 or 8 scattered corners;
// - "% size" is a mask (power-of-two tables, i.e. every hashed level), a
//   conditional subtraction where the index provably stays below 2 * size, or
//   a division-free remainder, never an integer division per corner.

#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace radnerf_grid {

constexpr uint32_t kPrimes[7] = {1u, 2654435761u, 805459861u, 3674653429u,
                                 2097192037u, 1434869437u, 2165219737u};
// Points located together. Also the prefetch distance: 64 points x 4 lines
// (3D) stay well inside the 48 KB L1 until they are used.
constexpr int kChunk = 64;

// Round n up to whole chunks: dimension-major point copies are padded to this
// length (with zeros, which are in range) so a chunk never reads past the end.
inline int64_t padded_points(int64_t n) { return (n + kChunk - 1) / kChunk * kChunk; }

struct Level {
  double scale;
  int64_t offset;      // first entry of the level
  uint32_t size;       // entries in the level
  uint32_t mask;       // size - 1 (hashed levels have power-of-two sizes)
  bool hashed;
  uint32_t strides[7];  // row-major strides; 0 where the reference stops adding dims
  bool pow2;            // size is a power of two: "% size" is "& mask"
  bool small_wrap;      // points in [0, 1] give row-major indices below 2 * size
};

inline void init_level(Level& lv, double pos_offset) {
  lv.mask = lv.size - 1;
  lv.pow2 = (lv.size & (lv.size - 1)) == 0;
  // Largest upper vertex for x <= 1 is floor(scale + offset) + 1 in every dimension.
  const uint64_t top = (uint64_t)std::floor(lv.scale + pos_offset) + 1;
  uint64_t max_index = 0;
  for (int d = 0; d < 7; ++d) max_index += top * lv.strides[d];
  lv.small_wrap = !lv.hashed && max_index < 2 * (uint64_t)lv.size;
}

// xt[d * stride + b] = x[b * D + d] for b in [b0, b1), zero up to the padded end
// when b1 is the last point. Locating reads one dimension of kChunk points at a
// time; from the [N, D] rows that would be a strided gather per level.
template <typename T, int D>
void points_dim_major(const T* __restrict__ x, T* __restrict__ xt, int64_t stride, int64_t N,
                      int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b)
    for (int d = 0; d < D; ++d) xt[d * stride + b] = x[b * D + d];
  if (b1 == N)
    for (int d = 0; d < D; ++d)
      for (int64_t b = N; b < stride; ++b) xt[d * stride + b] = 0;
}

// Corner indices and weights of kChunk points in one level. Corner c takes the
// upper vertex in dimension d when bit d of c is set, as in tiny-cuda-nn.
template <typename T, int D>
struct Chunk {
  static constexpr int C = 1 << D;
  uint32_t idx[C][kChunk];
  T w[C][kChunk];
  T frac[D][kChunk];
  bool inside[kChunk];  // point in [0, 1]^D (only filled when zero_oob)
  bool all_inside;      // every point of the chunk in [0, 1]^D

  // xt: dimension-major points (row stride `stride`) starting at this chunk.
  template <bool HASH>
  inline void locate(const T* __restrict__ xt, int64_t stride, const Level& lv, T pos_offset,
                     bool zero_oob) {
    const T scale = (T)lv.scale;
    // part[d][b][k]: dimension d's contribution to the index for vertex v_d + b;
    // wd[d][b][k]: its interpolation factor (1 - frac or frac).
    alignas(64) uint32_t part[D][2][kChunk];
    alignas(64) T wd[D][2][kChunk];
    bool in_range = true;
    if (zero_oob)
      for (int k = 0; k < kChunk; ++k) inside[k] = true;
#pragma GCC unroll 8
    for (int d = 0; d < D; ++d) {
      const T* __restrict__ xs = xt + d * stride;
      const uint32_t mul = HASH ? kPrimes[d] : lv.strides[d];
      // Written so that NaN counts as out of range.
      bool dim_in_range = true;
      for (int k = 0; k < kChunk; ++k) dim_in_range &= (xs[k] >= 0) & (xs[k] <= 1);
      in_range = in_range && dim_in_range;
      if (zero_oob && !dim_in_range)
        for (int k = 0; k < kChunk; ++k) inside[k] = inside[k] && xs[k] >= 0 && xs[k] <= 1;
#pragma omp simd
      for (int k = 0; k < kChunk; ++k) {
        // One rounding, like fmaf(scale, x, 0.5f) in tiny-cuda-nn.
        const T pos = std::fma(scale, xs[k], pos_offset);
        // floor via truncation (std::floor does not vectorize here); exact
        // wherever the (int) cast of the reference is defined.
        const int32_t t = (int32_t)pos;
        const int32_t v = t - (int32_t)((T)t > pos);
        const T fr = pos - (T)v;
        frac[d][k] = fr;
        wd[d][0][k] = (T)1 - fr;
        wd[d][1][k] = fr;
        part[d][0][k] = (uint32_t)v * mul;
        part[d][1][k] = (uint32_t)v * mul + mul;  // (v + 1) * mul in uint32 arithmetic
      }
    }
    all_inside = in_range;
    // Corners of the first d + 1 dimensions from those of the first d: index
    // (xor or sum) and weight (product, in dimension order as in tcnn) of
    // corner c are built from corner c & ((1 << d) - 1). Integer xor/sum are
    // exact and the products keep their order, so sharing changes no bit.
    alignas(64) uint32_t raw[C][kChunk];
    for (int k = 0; k < kChunk; ++k) {
      raw[0][k] = part[0][0][k];
      raw[1][k] = part[0][1][k];
      w[0][k] = wd[0][0][k];
      w[1][k] = wd[0][1][k];
    }
#pragma GCC unroll 8
    for (int d = 1; d < D; ++d) {
      const int half = 1 << d;
      // Upper half first, so the lower half's inputs are still intact.
#pragma GCC unroll 8
      for (int c = 0; c < half; ++c) {
#pragma omp simd
        for (int k = 0; k < kChunk; ++k) {
          const uint32_t i = raw[c][k];
          const T wc = w[c][k];
          raw[c + half][k] = HASH ? (i ^ part[d][1][k]) : (i + part[d][1][k]);
          w[c + half][k] = wc * wd[d][1][k];
          raw[c][k] = HASH ? (i ^ part[d][0][k]) : (i + part[d][0][k]);
          w[c][k] = wc * wd[d][0][k];
        }
      }
    }
    // How to take "% size" for this chunk: a mask for power-of-two tables (all
    // hashed levels), one conditional subtraction when the row-major index is
    // known to stay below 2 * size, else a division-free general remainder.
    const int mode = (HASH || lv.pow2) ? 0 : (lv.small_wrap && in_range) ? 1 : 2;
    const uint32_t usize = lv.size;
    const uint32_t mask = lv.mask;
    if (mode == 0) {
      for (int c = 0; c < C; ++c)
#pragma omp simd
        for (int k = 0; k < kChunk; ++k) idx[c][k] = raw[c][k] & mask;
    } else if (mode == 1) {
      for (int c = 0; c < C; ++c)
#pragma omp simd
        for (int k = 0; k < kChunk; ++k)
          idx[c][k] = raw[c][k] - (raw[c][k] >= usize ? usize : 0u);
    } else {
      const double inv_size = 1.0 / (double)lv.size;
      const int64_t size = lv.size;
      for (int c = 0; c < C; ++c)
        for (int k = 0; k < kChunk; ++k) {
          // A double estimate of the quotient is off by at most one; correct it.
          const int64_t q = (int64_t)((double)raw[c][k] * inv_size);
          int64_t r = (int64_t)raw[c][k] - q * size;
          r += r < 0 ? size : 0;
          r -= r >= size ? size : 0;
          idx[c][k] = (uint32_t)r;
        }
    }
  }

  // Prefetch point k's table lines. Corners that differ only in dimension 0
  // are neighbours (stride 1), so one prefetch per pair covers both unless
  // they straddle a line; prefetching the odd one too costs more than it saves.
  template <int F, int RW>
  inline void prefetch(const T* base, int k) const {
    for (int c = 0; c < C; c += 2) __builtin_prefetch(base + (int64_t)idx[c][k] * F, RW, 3);
  }
};

// out[b * out_stride + f] = sum_c w_c * table[idx_c * F + f], for b in [b0, b1).
// xt: dimension-major points (row stride xt_stride), indexed by absolute point.
template <typename T, int D, int F, bool HASH>
void forward_level(const T* __restrict__ xt, int64_t xt_stride, const T* __restrict__ table,
                   T* __restrict__ out, int64_t out_stride, int64_t b0, int64_t b1,
                   const Level& lv, T pos_offset, bool zero_oob) {
  constexpr int C = 1 << D;
  if (b0 >= b1) return;
  Chunk<T, D> chunks[2];
  chunks[0].template locate<HASH>(xt + b0, xt_stride, lv, pos_offset, zero_oob);
  int cur = 0;
  for (int64_t s = b0; s < b1; s += kChunk, cur ^= 1) {
    const Chunk<T, D>& ch = chunks[cur];
    Chunk<T, D>& next = chunks[cur ^ 1];
    const bool has_next = s + kChunk < b1;
    if (has_next) next.template locate<HASH>(xt + s + kChunk, xt_stride, lv, pos_offset, zero_oob);
    const int n = (int)std::min<int64_t>(kChunk, b1 - s);
    const bool mask_oob = zero_oob && !ch.all_inside;
    for (int k = 0; k < n; ++k) {
      if (has_next) next.template prefetch<F, 0>(table, k);
      T acc[F];
      for (int f = 0; f < F; ++f) acc[f] = 0;
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) {
        const T* e = table + (int64_t)ch.idx[c][k] * F;
        const T wc = ch.w[c][k];
        for (int f = 0; f < F; ++f) acc[f] += wc * e[f];
      }
      T* o = out + (s + k) * out_stride;
      if (mask_oob && !ch.inside[k])
        for (int f = 0; f < F; ++f) acc[f] = 0;
      for (int f = 0; f < F; ++f) o[f] = acc[f];
    }
  }
}

// Table gradient of one level over all N points (the caller owns the level,
// so no other thread touches grad_table), plus, when gx is not null, this
// level's share of the input gradient added into gx[b * D + d].
// grad_out[b * grad_stride + f] is this level's output gradient of point b.
template <typename T, int D, int F, bool HASH>
void backward_level(const T* __restrict__ grad_out, int64_t grad_stride, const T* __restrict__ xt,
                    int64_t xt_stride, const T* __restrict__ table, T* __restrict__ grad_table,
                    T* __restrict__ gx, int64_t N, const Level& lv, T pos_offset, bool zero_oob) {
  constexpr int C = 1 << D;
  const T scale = (T)lv.scale;
  // Zeroed right before the scatter, so the level's gradient is still cached.
  std::memset(grad_table, 0, sizeof(T) * (size_t)lv.size * F);
  if (N <= 0) return;
  Chunk<T, D> chunks[2];
  chunks[0].template locate<HASH>(xt, xt_stride, lv, pos_offset, zero_oob);
  int cur = 0;
  for (int64_t s = 0; s < N; s += kChunk, cur ^= 1) {
    const Chunk<T, D>& ch = chunks[cur];
    Chunk<T, D>& next = chunks[cur ^ 1];
    const bool has_next = s + kChunk < N;
    if (has_next) next.template locate<HASH>(xt + s + kChunk, xt_stride, lv, pos_offset, zero_oob);
    const int n = (int)std::min<int64_t>(kChunk, N - s);
    const bool mask_oob = zero_oob && !ch.all_inside;
    for (int k = 0; k < n; ++k) {
      if (has_next) {
        next.template prefetch<F, 1>(grad_table, k);
        if (gx) next.template prefetch<F, 0>(table, k);
      }
      if (mask_oob && !ch.inside[k]) continue;
      const T* g = grad_out + (s + k) * grad_stride;
      T gk[F];
      for (int f = 0; f < F; ++f) gk[f] = g[f];
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) {
        T* ge = grad_table + (int64_t)ch.idx[c][k] * F;
        const T wc = ch.w[c][k];
        for (int f = 0; f < F; ++f) ge[f] += wc * gk[f];
      }
      if (gx) {
        // d out / d x_d = scale * sum_c (d w_c / d frac_d) <table[idx_c], g>,
        // where d w_c / d frac_d is +/- the product of the other dims' factors.
        T dx[D];
        for (int d = 0; d < D; ++d) dx[d] = 0;
#pragma GCC unroll 8
        for (int c = 0; c < C; ++c) {
          const T* e = table + (int64_t)ch.idx[c][k] * F;
          T dot = 0;
          for (int f = 0; f < F; ++f) dot += e[f] * gk[f];
          for (int d = 0; d < D; ++d) {
            T dw = ((c >> d) & 1) ? (T)1 : (T)-1;
            for (int j = 0; j < D; ++j) {
              if (j == d) continue;
              dw *= ((c >> j) & 1) ? ch.frac[j][k] : (T)1 - ch.frac[j][k];
            }
            dx[d] += dw * dot;
          }
        }
        for (int d = 0; d < D; ++d) gx[(s + k) * D + d] += dx[d] * scale;
      }
    }
  }
}

}  // namespace radnerf_grid
