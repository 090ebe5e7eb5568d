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
// Points located together, which is also the prefetch distance in points.
// Measured: 32 and 48 beat 64 and 96 (the prefetched lines of a longer chunk
// start to leave L1 before they are used).
constexpr int kChunk = 32;

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

// 1 when x is outside [0, 1] or NaN, else 0 (-0 is inside, as -0 >= 0).
// Float comparisons in a reduction compile to scalar compares (they may trap
// on NaN); the same test on the bit pattern vectorizes: non-negative floats
// order like their bits, and NaN, infinities and negatives all compare above
// the bits of 1.
inline uint32_t outside_unit(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return (uint32_t)((u > 0x3F800000u) & (u != 0x80000000u));
}
inline uint32_t outside_unit(double x) {
  uint64_t u;
  std::memcpy(&u, &x, sizeof(u));
  return (uint32_t)((u > 0x3FF0000000000000ull) & (u != 0x8000000000000000ull));
}

// Corner indices and weights of kChunk points in one level. Corner c takes the
// upper vertex in dimension d when bit d of c is set, as in tiny-cuda-nn.
template <typename T, int D>
struct Chunk {
  static constexpr int C = 1 << D;
  uint32_t idx[C][kChunk];
  T w[C][kChunk];
  // wd[d][b][k]: dimension d's interpolation factor for vertex v_d + b, i.e.
  // 1 - frac (b = 0) or frac (b = 1); the input gradient needs them again.
  T wd[D][2][kChunk];
  bool inside[kChunk];  // point in [0, 1]^D (only filled when zero_oob)
  bool all_inside;      // every point of the chunk in [0, 1]^D

  // xt: dimension-major points (row stride `stride`) starting at this chunk.
  template <bool HASH>
  inline void locate(const T* __restrict__ xt, int64_t stride, const Level& lv, T pos_offset,
                     bool zero_oob) {
    const T scale = (T)lv.scale;
    // part[d][b][k]: dimension d's contribution to the index for vertex v_d + b.
    alignas(64) uint32_t part[D][2][kChunk];
    bool in_range = true;
    if (zero_oob)
      for (int k = 0; k < kChunk; ++k) inside[k] = true;
#pragma GCC unroll 8
    for (int d = 0; d < D; ++d) {
      const T* __restrict__ xs = xt + d * stride;
      const uint32_t mul = HASH ? kPrimes[d] : lv.strides[d];
      uint32_t outside = 0;
      for (int k = 0; k < kChunk; ++k) outside |= outside_unit(xs[k]);
      const bool dim_in_range = outside == 0;
      in_range = in_range && dim_in_range;
      if (zero_oob && !dim_in_range)
        for (int k = 0; k < kChunk; ++k) inside[k] = inside[k] && !outside_unit(xs[k]);
#pragma omp simd
      for (int k = 0; k < kChunk; ++k) {
        // One rounding, like fmaf(scale, x, 0.5f) in tiny-cuda-nn.
        const T pos = std::fma(scale, xs[k], pos_offset);
        // floor via truncation (std::floor does not vectorize here); exact
        // wherever the (int) cast of the reference is defined.
        const int32_t t = (int32_t)pos;
        const int32_t v = t - (int32_t)((T)t > pos);
        const T fr = pos - (T)v;
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
      // Corner c of the first d dimensions becomes corner c (lower vertex in
      // dimension d) and corner c + half (upper vertex), both read before written.
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

// e[f] += w * g[f] for f < F: one multiply and one add per feature, rounded
// as written. GCC and Clang do the F features as one short vector (their
// loop vectorizer leaves this scalar); elsewhere, a plain loop.
template <typename T, int F>
inline void add_scaled(T* __restrict__ e, T w, const T* __restrict__ g) {
#if defined(__GNUC__)
  typedef T V __attribute__((vector_size(sizeof(T) * F)));
  V ev, gv;
  std::memcpy(&ev, e, sizeof(V));
  std::memcpy(&gv, g, sizeof(V));
  ev += w * gv;
  std::memcpy(e, &ev, sizeof(V));
#else
  for (int f = 0; f < F; ++f) e[f] += w * g[f];
#endif
}

// 0 + e[0] g[0] + e[1] g[1] + ..., summed in that order; the products as
// one short vector where the compiler has them (the sum order is unchanged).
template <typename T, int F>
inline T dot(const T* __restrict__ e, const T* __restrict__ g) {
#if defined(__GNUC__)
  typedef T V __attribute__((vector_size(sizeof(T) * F)));
  V ev, gv;
  std::memcpy(&ev, e, sizeof(V));
  std::memcpy(&gv, g, sizeof(V));
  const V p = ev * gv;
  T sum = 0;
  for (int f = 0; f < F; ++f) sum += p[f];
  return sum;
#else
  T sum = 0;
  for (int f = 0; f < F; ++f) sum += e[f] * g[f];
  return sum;
#endif
}

// out[f * feat_stride + b] = sum_c w_c * table[idx_c * F + f], for b in [b0, b1):
// one contiguous run of points per feature, as in the caller's [L * F, N]
// output (feature-major, returned to torch as a transposed [N, L * F] view).
// Feature-major output means each level writes F sequential streams; rows of
// [N, L * F] would touch a new cache line per point and level, or need a
// transpose pass as long as a third of the whole forward.
// xt: dimension-major points (row stride xt_stride), indexed by absolute point.
template <typename T, int D, int F, bool HASH>
void forward_level(const T* __restrict__ xt, int64_t xt_stride, const T* __restrict__ table,
                   T* __restrict__ out, int64_t feat_stride, int64_t b0, int64_t b1,
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
    // The last chunk "prefetches" its own, already cached, lines: cheaper
    // than testing for a next chunk at every point.
    const Chunk<T, D>& pf = has_next ? next : ch;
    for (int k = 0; k < n; ++k) {
      pf.template prefetch<F, 0>(table, k);
      T acc[F];
      for (int f = 0; f < F; ++f) acc[f] = 0;
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c)
        add_scaled<T, F>(acc, ch.w[c][k], table + (int64_t)ch.idx[c][k] * F);
      if (mask_oob && !ch.inside[k])
        for (int f = 0; f < F; ++f) acc[f] = 0;
      // Scalar stores: staging the chunk and splitting it with vector loads
      // stalls on store forwarding (wide loads of just-stored narrow values).
      for (int f = 0; f < F; ++f) out[f * feat_stride + s + k] = acc[f];
    }
  }
}

// One level's backward with the input gradient compiled in or out (GX), so
// the table-gradient-only loop carries no per-point test for it.
template <typename T, int D, int F, bool HASH, bool GX>
void backward_level_impl(const T* __restrict__ grad_out, int64_t grad_stride, int64_t grad_feat_stride,
                         const T* __restrict__ xt, int64_t xt_stride, const T* __restrict__ table,
                         T* __restrict__ grad_table, T* __restrict__ gx, int64_t gx_stride,
                         int64_t N, const Level& lv, T pos_offset, bool zero_oob) {
  constexpr int C = 1 << D;
  const T scale = (T)lv.scale;
  Chunk<T, D> chunks[2];
  // <table[idx_c], g> per corner and point, for the input gradient.
  alignas(64) T dots[GX ? C : 1][kChunk];
  // The chunk's output gradients, point-major (a copy when they are
  // feature-major; used in place when they are point-major).
  alignas(64) T gch[kChunk * F];
  const bool point_major = grad_feat_stride == 1 && grad_stride == F;
  chunks[0].template locate<HASH>(xt, xt_stride, lv, pos_offset, zero_oob);
  int cur = 0;
  for (int64_t s = 0; s < N; s += kChunk, cur ^= 1) {
    const Chunk<T, D>& ch = chunks[cur];
    Chunk<T, D>& next = chunks[cur ^ 1];
    const bool has_next = s + kChunk < N;
    if (has_next) next.template locate<HASH>(xt + s + kChunk, xt_stride, lv, pos_offset, zero_oob);
    // The last chunk "prefetches" its own, already cached, lines: cheaper
    // than testing for a next chunk at every point.
    const Chunk<T, D>& pf = has_next ? next : ch;
    const int n = (int)std::min<int64_t>(kChunk, N - s);
    const bool mask_oob = zero_oob && !ch.all_inside;
    const T* gs = grad_out + s * F;
    if (!point_major) {
      for (int f = 0; f < F; ++f)
        for (int k = 0; k < n; ++k)
          gch[k * F + f] = grad_out[(s + k) * grad_stride + f * grad_feat_stride];
      gs = gch;
    }
    for (int k = 0; k < n; ++k) {
      pf.template prefetch<F, 1>(grad_table, k);
      if (GX) pf.template prefetch<F, 0>(table, k);
      if (mask_oob && !ch.inside[k]) {
        // No gradient at all; zero dots make its input-gradient term +-0,
        // and adding that to a sum that started at +0 changes nothing.
        if (GX)
          for (int c = 0; c < C; ++c) dots[c][k] = 0;
        continue;
      }
      const T* gk = gs + k * F;
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c)
        add_scaled<T, F>(grad_table + (int64_t)ch.idx[c][k] * F, ch.w[c][k], gk);
      if (GX) {
#pragma GCC unroll 8
        for (int c = 0; c < C; ++c) {
          dots[c][k] = dot<T, F>(table + (int64_t)ch.idx[c][k] * F, gk);
        }
      }
    }
    if (GX) {
      // d out / d x_d = scale * sum_c (d w_c / d frac_d) <table[idx_c], g>,
      // where d w_c / d frac_d is +/- the product of the other dimensions'
      // factors, in dimension order. Done here, SIMD across the chunk's points,
      // rather than per point inside the scatter loop.
#pragma GCC unroll 8
      for (int d = 0; d < D; ++d) {
        T* __restrict__ gxd = gx + d * gx_stride + s;
#pragma omp simd
        for (int k = 0; k < kChunk; ++k) {
          T acc = 0;
#pragma GCC unroll 8
          for (int c = 0; c < C; ++c) {
            T dw = ((c >> d) & 1) ? (T)1 : (T)-1;
#pragma GCC unroll 8
            for (int j = 0; j < D; ++j)
              if (j != d) dw *= ch.wd[j][(c >> j) & 1][k];
            acc += dw * dots[c][k];
          }
          gxd[k] += acc * scale;
        }
      }
    }
  }
}

// Table gradient of one level over all N points (the caller owns the level,
// so no other thread touches grad_table), plus, when gx is not null, this
// level's share of the input gradient added into gx[d * gx_stride + b]
// (dimension-major, at least padded_points(N) long per dimension).
// grad_out[b * grad_stride + f * grad_feat_stride] is this level's output
// gradient of point b: point-major (grad_stride F, grad_feat_stride 1) or
// feature-major like the forward's output (1 and N).
template <typename T, int D, int F, bool HASH>
void backward_level(const T* __restrict__ grad_out, int64_t grad_stride, int64_t grad_feat_stride,
                    const T* __restrict__ xt,
                    int64_t xt_stride, const T* __restrict__ table, T* __restrict__ grad_table,
                    T* __restrict__ gx, int64_t gx_stride, int64_t N, const Level& lv,
                    T pos_offset, bool zero_oob) {
  // Zeroed right before the scatter, so the level's gradient is still cached.
  std::memset(grad_table, 0, sizeof(T) * (size_t)lv.size * F);
  if (N <= 0) return;
  if (gx) {
    backward_level_impl<T, D, F, HASH, true>(grad_out, grad_stride, grad_feat_stride, xt, xt_stride, table,
                                             grad_table, gx, gx_stride, N, lv, pos_offset,
                                             zero_oob);
  } else {
    backward_level_impl<T, D, F, HASH, false>(grad_out, grad_stride, grad_feat_stride, xt, xt_stride, table,
                                              grad_table, nullptr, gx_stride, N, lv, pos_offset,
                                              zero_oob);
  }
}

}  // namespace radnerf_grid
