// Parameters and launchers of the kernels behind filterbank::banded_recurrence
// and filterbank::csr_recurrence on CUDA tensors (docs/design.md, "Coupled
// recurrences on the GPU"):
//
//   h[n, t] = f(A_m h[n, t-1] + u[n, t]),  m = index[n],  f: identity, tanh or relu,
//
// channels last: u, h (N, T, C) contiguous, h0 (N, C). The backward runs, in
// reverse time, delta[t] = f'(z[t]) (grad_h[t] + A^T delta[t+1]), f' read off
// the saved output h (tanh: 1 - h^2, relu: h > 0), and forms grad_u = delta,
// grad_h0 = A^T delta[0] and each row's sums delta[t]_i h[t-1]_j on the
// matrix's structure, in float64 (the rows that share a matrix are summed
// afterwards, in row order, by reduce_rows: no floating-point atomics).
// The binding (binding.cpp) checks arguments; the kernels (coupled.cu)
// assume valid input. With FILTERBANK_EMULATE the same source builds for CPU
// threads (emulation.h).
#pragma once

#include <cstdint>

#ifdef FILTERBANK_EMULATE
#include "emulation.h"
#else
#include <cuda_runtime.h>
#endif

namespace filterbank {

enum Nonlinearity : int { kIdentity = 0, kTanh = 1, kRelu = 2 };

// The matrices of the rows. Banded: band (M, W, C), diagonal d of row i
// (A[i, i + d - lower]) at band[(m W + d) C + i], so that consecutive
// threads (channels) read consecutive coefficients; entries whose column
// falls outside [0, C) are never read. CSR: one pattern (crow (C + 1), col
// (nnz), sorted within rows) and values (M, nnz); the backward also takes
// the transposed pattern (crow_t, col_t) and values_t (M, nnz) in its order.
template <typename scalar_t>
struct CoupledParams {
  const scalar_t* u;        // (N, T, C), forward only
  const scalar_t* h0;       // (N, C)
  scalar_t* h;              // (N, T, C): written by the forward, read by the backward
  const int64_t* index;     // (N,): the matrix of each row
  // Banded.
  const scalar_t* band;     // (M, W, C)
  int64_t width;            // W = lower + upper + 1
  int64_t lower;
  // CSR.
  const int64_t* crow;      // (C + 1,)
  const int64_t* col;       // (nnz,)
  const scalar_t* values;   // (M, nnz)
  const int64_t* crow_t;    // (C + 1,), backward only
  const int64_t* col_t;     // (nnz,)
  const scalar_t* values_t;  // (M, nnz)
  int64_t nnz;
  // Backward.
  const scalar_t* grad_h;   // (N, T, C)
  scalar_t* grad_u;         // (N, T, C)
  scalar_t* grad_h0;        // (N, C)
  double* grad_rows;        // (N, W, C) banded, (N, nnz) CSR: each row's own sums
  int64_t n_rows, n_time, n_channels;
  int nonlinearity;         // Nonlinearity
};

// Launchers return the first CUDA error (cudaErrorInvalidValue when even one
// row's state does not fit in a block's shared memory); the binding turns it
// into an exception.
template <typename scalar_t>
cudaError_t launch_banded_forward(const CoupledParams<scalar_t>& params, cudaStream_t stream);
template <typename scalar_t>
cudaError_t launch_banded_backward(const CoupledParams<scalar_t>& params, cudaStream_t stream);
template <typename scalar_t>
cudaError_t launch_csr_forward(const CoupledParams<scalar_t>& params, cudaStream_t stream);
template <typename scalar_t>
cudaError_t launch_csr_backward(const CoupledParams<scalar_t>& params, cudaStream_t stream);

// out[m, e] = sum of per_row[n, e] over the rows n of matrix m, in increasing
// n: rows[start[m] .. start[m + 1]) lists them (a stable sort of the index).
// per_row (N, E), out (M, E), both float64.
cudaError_t launch_reduce_rows(const double* per_row, const int64_t* rows, const int64_t* start, double* out,
                               int64_t n_matrices, int64_t n_entries, cudaStream_t stream);

// The largest C the kernels take for a dtype of `itemsize` bytes (the
// backward's state, four rows of C, in one block's shared memory).
int64_t max_coupled_channels(int itemsize);

}  // namespace filterbank
