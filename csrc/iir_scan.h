// Parameters and launchers of the kernels behind filterbank::iir_cascade on
// CUDA tensors (docs/design.md, "Time-parallel scan (GPU)").
//
// One kernel runs a whole group of up to kMaxSections sections of order K
// (K * S <= 8) over every channel; a second runs the group's fused
// backward. The binding (binding.cpp) checks arguments, allocates the
// workspaces and passes the stream; the kernels (iir_scan.cu) assume valid
// input. With FILTERBANK_EMULATE the same source builds for CPU threads
// (emulation.h).
#pragma once

#include <cstdint>

#ifdef FILTERBANK_EMULATE
#include "emulation.h"
#else
#include <cuda_runtime.h>
#endif

namespace filterbank {

// Threads per block, and samples one thread runs sequentially (a chunk): a
// block covers a tile of kThreads chunks. Float64 uses shorter chunks so that
// a backward tile of every section's signal fits in shared memory.
constexpr int kThreads = 128;
template <typename scalar_t>
__host__ __device__ constexpr int chunk_length() {
  return sizeof(scalar_t) == 4 ? 32 : 16;
}
template <typename scalar_t>
__host__ __device__ constexpr int tile_length() {
  return kThreads * chunk_length<scalar_t>();
}
constexpr int kMaxSections = 4;   // S
constexpr int kMaxOrder = 8;      // K
constexpr int kChannelsPerBlock = 16;  // a block's channels share one staged input tile

// Channel p of the group reads row x_index[p] of x. The binding sorts the
// channels by row: the channels of row r are channel_order[row_start[r] ..
// row_start[r + 1]), and a block takes one row, one of `splits` slices of its
// channels, and one tile.
//
// Forward, per channel and section s (a normalised by a[.., 0] in-kernel):
//   y_s[t] = sum_k b_s[k] y_{s-1}[t - k] - sum_{k>=1} a_s[k] y_s[t - k] (+ zi_s[t], t < K),
//   y_{-1} = x row, y = y_{S-1}, zf: scipy's TDF-II state after the last sample.
template <typename scalar_t>
struct CascadeParams {
  const scalar_t* x;           // (rows, T), time contiguous, rows x_row_stride apart
  int64_t x_row_stride;
  int64_t n_rows;
  const int64_t* row_start;    // (rows + 1,)
  const int64_t* channel_order;  // (P,)
  const scalar_t* b;           // (P, S, K + 1) contiguous, raw
  const scalar_t* a;           // (P, S, K + 1) contiguous, raw, a[.., 0] != 0
  const scalar_t* zi;          // (P, S, K)
  scalar_t* y;                 // (P, T) contiguous, or nullptr: tile states only
  scalar_t* zf;                // (P, S, K), or nullptr
  double* tile_state;          // (P, n_tiles, 2, K * (S + 1)): each tile's aggregate and end state (look-back)
  int* tile_flag;              // (P, n_tiles), zero on entry: 1 aggregate published, 2 end state published
  int* ticket;                 // (1,), zero on entry: the order in which blocks start
  int64_t* bad_channel;        // (1,): set to 1 + a channel whose a[.., 0] is 0 (its outputs are not finite)
  int64_t n_channels;
  int64_t n_time;
  int64_t n_tiles;
  int64_t splits;
};

// Backward of one group: with u_s the adjoint of section s,
//   u_s[t] = g_s[t] - sum_{k>=1} a_s[k] u_s[t + k],  g_{s-1}[t] = sum_k b_s[k] u_s[t + k],
// g_{S-1} = grad_y, the gradient of zf entering at the last K samples, and
//   sums[p, j, s, k]         = sum_{t in tile j} u_s[t] y_{s-1}[t - k]    k = 0..K
//   sums[p, j, s, K + k]     = sum_{t in tile j} u_s[t] y_s[t - k]        k = 1..K
// (plus zf's direct terms), accumulated in float64, for the normalised
// coefficients; grad_zi[p, s, t] = u_s[t] (t < K); grad_x[q, r, t] = the sum
// of g_{-1} over the channels of slice q of row r.
template <typename scalar_t>
struct AdjointParams {
  CascadeParams<scalar_t> forward;  // x, rows, coefficients, zi; forward.tile_state holds the end states
  const scalar_t* grad_y;      // (P, T) contiguous
  const scalar_t* grad_zf;     // (P, S, K)
  scalar_t* grad_x;            // (splits, rows, T)
  scalar_t* grad_zi;           // (P, S, K)
  double* sums;                // (P, n_tiles, S, 2K + 1)
  double* tile_state;          // (P, n_tiles, 2, K * S): the adjoint's look-back
  int* tile_flag;              // (P, n_tiles), zero on entry
  int* ticket;                 // (1,), zero on entry
};

// Launchers return the first CUDA error (cudaErrorInvalidValue for an order
// or section count without a kernel); the binding turns it into an exception.
template <typename scalar_t>
cudaError_t launch_cascade(const CascadeParams<scalar_t>& params, int order, int sections, cudaStream_t stream);
template <typename scalar_t>
cudaError_t launch_adjoint(const AdjointParams<scalar_t>& params, int order, int sections, cudaStream_t stream);

// The (order, sections) pairs that have kernels.
bool has_kernel(int order, int sections);

}  // namespace filterbank
