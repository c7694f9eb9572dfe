// Parameters and launchers of the CUDA kernels behind filterbank::iir_cascade.
//
// One IIR section of order K per channel, run by a time-parallel chunked scan
// (docs/design.md, "Time-parallel scan (GPU)"), and the fused reductions of
// the backward. The binding (binding.cpp) checks arguments, guards the device
// and passes the current stream; the kernels (iir_scan.cu) assume valid input.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace filterbank {

// Samples one thread runs sequentially (a chunk), and chunks per block (a
// tile). CHUNK >= the largest order, so a chunk's last K outputs are its own
// unless it is the signal's short last chunk.
constexpr int kChunk = 16;
constexpr int kThreads = 256;
constexpr int kTile = kChunk * kThreads;
constexpr int kMaxOrder = 8;

// y[p, t] = sum_k b[p, k] x[row(p), t - k] - sum_{k>=1} a[p, k] y[p, t - k]
//           (+ zi[p, t] for t < K), with a[p, 0] == 1, in "logical" time t;
// when reverse, logical t is physical index T - 1 - t for x and y alike.
template <typename scalar_t>
struct SectionParams {
  const scalar_t* x;         // (rows, T), time contiguous, rows at x_row_stride
  int64_t x_row_stride;
  const int64_t* x_index;    // (P,): the row of x each channel reads
  const scalar_t* b;         // (P, K + 1), normalised by a0
  const scalar_t* a;         // (P, K + 1), normalised, a[:, 0] == 1
  const scalar_t* zi;        // (P, K) or nullptr
  scalar_t* y;               // (P, T), contiguous
  scalar_t* powers;          // workspace (P, n_levels, K, K): (A^CHUNK)^(2^m)
  scalar_t* tile_states;     // workspace (P, n_tiles, K): tile end states, then start states
  int64_t n_channels;
  int64_t n_time;
  int64_t n_tiles;
  int n_levels;
  bool reverse;
};

// The number of power levels the scan needs for n_time samples.
int scan_levels(int64_t n_time);

// Launchers return the first CUDA error (cudaErrorInvalidValue for an order
// outside 1..kMaxOrder); the binding turns it into an exception.

template <typename scalar_t>
cudaError_t launch_section(const SectionParams<scalar_t>& params, int order, cudaStream_t stream);

// Backward reductions of one section, fused (nothing per sample is stored but
// grad_in): for every channel p,
//   sums[p, k]         = sum_t u[p, t] x[row(p), t - k]      k = 0..K
//   sums[p, K + k]     = sum_t u[p, t] y[p, t - k]           k = 1..K
//   grad_in[p, t]      = sum_k b[p, k] u[p, t + k]           (if grad_in)
// with samples outside [0, T) zero. sums are accumulated in double.
template <typename scalar_t>
struct CorrelateParams {
  const scalar_t* u;         // (P, T) contiguous
  const scalar_t* x;         // (rows, T), time contiguous
  int64_t x_row_stride;
  const int64_t* x_index;    // (P,)
  const scalar_t* y;         // (P, T) contiguous
  const scalar_t* b;         // (P, K + 1)
  scalar_t* grad_in;         // (P, T) or nullptr
  double* sums;              // (P, 2K + 1), zeroed by the caller
  int64_t n_channels;
  int64_t n_time;
};

template <typename scalar_t>
cudaError_t launch_correlate(const CorrelateParams<scalar_t>& params, int order, cudaStream_t stream);

}  // namespace filterbank
