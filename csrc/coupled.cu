// Kernels behind filterbank::banded_recurrence and filterbank::csr_recurrence
// on CUDA tensors (docs/design.md, "Coupled recurrences on the GPU"); shapes
// and the maths in coupled.h.
//
// The recurrence is sequential in time and couples the channels of a row at
// every step, so the parallelism is across rows and channels:
//   1. a block takes a group of R consecutive rows (R C <= 256 when C is
//      small, else one row); a thread takes slots (row r, channel i), slot
//      r C + i, consecutive threads consecutive channels, so every load of u
//      (grad_h, h) and store of h (grad_u) is coalesced;
//   2. the state of the step before, h[t-1] (backward: delta[t+1] and
//      h[t]), lives in shared memory, double-buffered: a step reads one
//      buffer and writes the other, so one __syncthreads per time step
//      orders both the reads before the next overwrite and the writes before
//      the next read;
//   3. the matrix is read from global memory in the layout of coupled.h (the
//      same W C or nnz coefficients every step: they stay in L1);
//   4. the backward's sums delta[t]_i h[t-1]_j are per row, in float64, each
//      entry owned by the thread of its channel i (no atomics), in shared
//      memory when they fit (else in the row's slice of grad_rows), written
//      once at the end; reduce_rows then sums the rows of each matrix in row
//      order, so the result is the same on every run.
// The arithmetic is the reference's: z = u + sum_j A_ij h_j over the
// structure, then f; delta = f'(h) (g + sum_i A_ij delta_i).
#include "coupled.h"

#include <cmath>

namespace filterbank {
namespace coupled_detail {
namespace {

constexpr int kMaxThreads = 1024;
constexpr int kRowThreads = 256;  // a block's slots when rows are grouped (C <= 256)

#ifdef FILTERBANK_EMULATE
inline unsigned char* shared_bytes() { return static_cast<unsigned char*>(FILTERBANK_DYNAMIC_SHARED()); }
#define FILTERBANK_COUPLED_READ(bytes) FILTERBANK_COUNT_READ(bytes)
#define FILTERBANK_COUPLED_WRITE(bytes) FILTERBANK_COUNT_WRITE(bytes)
#else
__device__ __forceinline__ unsigned char* shared_bytes() {
  extern __shared__ __align__(16) unsigned char filterbank_coupled_shared[];
  return filterbank_coupled_shared;
}
#define FILTERBANK_COUPLED_READ(bytes)
#define FILTERBANK_COUPLED_WRITE(bytes)
#endif

// Global memory goes through these (the emulation counts the bytes).
template <typename T>
__device__ __forceinline__ T load(const T* address) {
  FILTERBANK_COUPLED_READ(sizeof(T));
  return *address;
}
template <typename T>
__device__ __forceinline__ void store(T* address, T value) {
  FILTERBANK_COUPLED_WRITE(sizeof(T));
  *address = value;
}

#ifdef FILTERBANK_EMULATE
inline float activate_tanh(float z) { return std::tanh(z); }
inline double activate_tanh(double z) { return std::tanh(z); }
#else
__device__ __forceinline__ float activate_tanh(float z) { return tanhf(z); }
__device__ __forceinline__ double activate_tanh(double z) { return tanh(z); }
#endif

template <typename scalar_t>
__device__ __forceinline__ scalar_t activate(scalar_t z, int nonlinearity) {
  if (nonlinearity == kTanh) return activate_tanh(z);
  if (nonlinearity == kRelu) return z < scalar_t(0) ? scalar_t(0) : z;  // NaN stays NaN, as torch.relu
  return z;
}

// delta = f'(z) total, f' from the output h = f(z).
template <typename scalar_t>
__device__ __forceinline__ scalar_t adjoint(scalar_t total, scalar_t h, int nonlinearity) {
  if (nonlinearity == kTanh) return (scalar_t(1) - h * h) * total;
  if (nonlinearity == kRelu) return h > scalar_t(0) ? total : scalar_t(0);
  return total;
}

// A block's rows [first, first + rows_per_block); slot s is channel s % C of
// row s / C.
struct Slot {
  int64_t row;   // global row, or >= N for a slot past the last row
  int local;     // row within the block
  int64_t channel;
};

__device__ __forceinline__ Slot slot_of(int64_t slot, int64_t n_channels, int rows_per_block) {
  Slot s;
  s.local = static_cast<int>(slot / n_channels);
  s.channel = slot % n_channels;
  s.row = static_cast<int64_t>(blockIdx.x) * rows_per_block + s.local;
  return s;
}

// The diagonals d of row i whose column i + d - lower lies in [0, C).
__device__ __forceinline__ void band_range(int64_t i, int64_t lower, int64_t width, int64_t n_channels,
                                           int64_t& first, int64_t& last) {
  first = lower - i > 0 ? lower - i : 0;
  last = n_channels + lower - i < width ? n_channels + lower - i : width;
}

// The backward's per-row sums: in shared memory (row `local` of the block)
// or, when they do not fit, in the row's slice of grad_rows.
struct Sums {
  double* shared;      // (R, E) or nullptr
  double* global;      // grad_rows (N, E)
  int64_t n_entries;   // E: W C or nnz
  __device__ __forceinline__ void add(const Slot& s, int64_t e, double value) const {
    if (shared != nullptr) {
      shared[s.local * n_entries + e] += value;
    } else {
      double* at = global + s.row * n_entries + e;
      store(at, load(at) + value);
    }
  }
  __device__ __forceinline__ void zero(const Slot& s, int64_t e) const {
    if (shared != nullptr) {
      shared[s.local * n_entries + e] = 0.0;
    } else {
      store(global + s.row * n_entries + e, 0.0);
    }
  }
  __device__ __forceinline__ void flush(const Slot& s, int64_t e) const {
    if (shared != nullptr) store(global + s.row * n_entries + e, shared[s.local * n_entries + e]);
  }
};

// ---------------------------------------------------------------------------
// The matrices' structure: the few lines that differ between banded and CSR.

// (A h)_i over row i's structure, h a row of shared memory.
template <typename scalar_t>
struct Banded {
  const CoupledParams<scalar_t>& p;
  __device__ __forceinline__ const scalar_t* matrix(int64_t row) const {
    return p.band + load(p.index + row) * p.width * p.n_channels;
  }
  __device__ __forceinline__ scalar_t times(const scalar_t* a, int64_t i, const scalar_t* h) const {
    int64_t first, last;
    band_range(i, p.lower, p.width, p.n_channels, first, last);
    scalar_t total = scalar_t(0);
    for (int64_t d = first; d < last; ++d) total += load(a + d * p.n_channels + i) * h[i + d - p.lower];
    return total;
  }
  // (A^T delta)_j = sum_d A[j - d + lower, j] delta[j - d + lower].
  __device__ __forceinline__ scalar_t transposed_times(const scalar_t* a, int64_t j, const scalar_t* delta) const {
    scalar_t total = scalar_t(0);
    for (int64_t d = 0; d < p.width; ++d) {
      const int64_t i = j - d + p.lower;
      if (i >= 0 && i < p.n_channels) total += load(a + d * p.n_channels + i) * delta[i];
    }
    return total;
  }
  __device__ __forceinline__ int64_t n_entries() const { return p.width * p.n_channels; }
  // Row i owns entries (d, i) at d C + i: the diagonals inside the matrix.
  template <typename Visit>
  __device__ __forceinline__ void entries(int64_t i, Visit visit) const {
    int64_t first, last;
    band_range(i, p.lower, p.width, p.n_channels, first, last);
    for (int64_t d = first; d < last; ++d) visit(d * p.n_channels + i, i + d - p.lower);
  }
  template <typename Visit>
  __device__ __forceinline__ void all_entries(int64_t i, Visit visit) const {
    for (int64_t d = 0; d < p.width; ++d) visit(d * p.n_channels + i);
  }
};

template <typename scalar_t>
struct Sparse {
  const CoupledParams<scalar_t>& p;
  __device__ __forceinline__ const scalar_t* matrix(int64_t row) const {
    return p.values + load(p.index + row) * p.nnz;
  }
  __device__ __forceinline__ const scalar_t* transposed(int64_t row) const {
    return p.values_t + load(p.index + row) * p.nnz;
  }
  __device__ __forceinline__ scalar_t times(const scalar_t* a, int64_t i, const scalar_t* h) const {
    scalar_t total = scalar_t(0);
    const int64_t end = load(p.crow + i + 1);
    for (int64_t k = load(p.crow + i); k < end; ++k) total += load(a + k) * h[load(p.col + k)];
    return total;
  }
  __device__ __forceinline__ scalar_t transposed_times(const scalar_t* a_t, int64_t j, const scalar_t* delta) const {
    scalar_t total = scalar_t(0);
    const int64_t end = load(p.crow_t + j + 1);
    for (int64_t q = load(p.crow_t + j); q < end; ++q) total += load(a_t + q) * delta[load(p.col_t + q)];
    return total;
  }
  __device__ __forceinline__ int64_t n_entries() const { return p.nnz; }
  template <typename Visit>
  __device__ __forceinline__ void entries(int64_t i, Visit visit) const {
    const int64_t end = load(p.crow + i + 1);
    for (int64_t k = load(p.crow + i); k < end; ++k) visit(k, load(p.col + k));
  }
  template <typename Visit>
  __device__ __forceinline__ void all_entries(int64_t i, Visit visit) const {
    const int64_t end = load(p.crow + i + 1);
    for (int64_t k = load(p.crow + i); k < end; ++k) visit(k);
  }
};

template <typename scalar_t>
__device__ __forceinline__ const scalar_t* transposed_matrix(const Banded<scalar_t>& m, int64_t row) {
  return m.matrix(row);  // the band serves both directions
}
template <typename scalar_t>
__device__ __forceinline__ const scalar_t* transposed_matrix(const Sparse<scalar_t>& m, int64_t row) {
  return m.transposed(row);
}

// ---------------------------------------------------------------------------
// Forward: shared memory state[2][R C], h[t-1] in state[t % 2].

template <typename scalar_t, template <typename> class Structure>
__global__ void forward_kernel(CoupledParams<scalar_t> p, int rows_per_block) {
  const Structure<scalar_t> structure{p};
  const int64_t n_channels = p.n_channels, n_time = p.n_time;
  const int64_t slots = static_cast<int64_t>(rows_per_block) * n_channels;
  scalar_t* state = reinterpret_cast<scalar_t*>(shared_bytes());
  for (int64_t e = threadIdx.x; e < slots; e += blockDim.x) {
    const Slot s = slot_of(e, n_channels, rows_per_block);
    state[e] = s.row < p.n_rows ? load(p.h0 + s.row * n_channels + s.channel) : scalar_t(0);
  }
  __syncthreads();
  for (int64_t t = 0; t < n_time; ++t) {
    const scalar_t* before = state + (t % 2) * slots;
    scalar_t* now = state + ((t + 1) % 2) * slots;
    for (int64_t e = threadIdx.x; e < slots; e += blockDim.x) {
      const Slot s = slot_of(e, n_channels, rows_per_block);
      if (s.row >= p.n_rows) continue;
      const int64_t at = (s.row * n_time + t) * n_channels + s.channel;
      const scalar_t z = load(p.u + at) + structure.times(structure.matrix(s.row), s.channel,
                                                          before + s.local * n_channels);
      const scalar_t out = activate(z, p.nonlinearity);
      now[e] = out;
      store(p.h + at, out);
    }
    __syncthreads();  // now is complete before it is read; before is read before it is overwritten
  }
}

// ---------------------------------------------------------------------------
// Backward, t from T - 1 to 0. Shared memory: delta[2][R C] (delta[t] in
// buffer t % 2), hist[2][R C] (h[t-1] in buffer t % 2, h[-1] = h0), then the
// per-row sums (R, E) in float64 when they fit. Step t forms delta[t] from
// delta[t+1] and, for the step after it, adds delta[t+1]_i h[t]_j to the
// sums: both need the other threads' values of step t + 1, which the one
// barrier at the end of each step publishes.

template <typename scalar_t, template <typename> class Structure>
__global__ void backward_kernel(CoupledParams<scalar_t> p, int rows_per_block, bool sums_shared) {
  const Structure<scalar_t> structure{p};
  const int64_t n_channels = p.n_channels, n_time = p.n_time;
  const int64_t slots = static_cast<int64_t>(rows_per_block) * n_channels;
  scalar_t* delta = reinterpret_cast<scalar_t*>(shared_bytes());
  scalar_t* hist = delta + 2 * slots;
  // The sums after four rows of scalars, aligned for doubles.
  const size_t scalar_bytes = (4 * slots * sizeof(scalar_t) + sizeof(double) - 1) / sizeof(double) * sizeof(double);
  const Sums sums{sums_shared ? reinterpret_cast<double*>(shared_bytes() + scalar_bytes) : nullptr, p.grad_rows,
                  structure.n_entries()};
  for (int64_t e = threadIdx.x; e < slots; e += blockDim.x) {
    const Slot s = slot_of(e, n_channels, rows_per_block);
    if (s.row < p.n_rows) structure.all_entries(s.channel, [&](int64_t k) { sums.zero(s, k); });
  }
  for (int64_t t = n_time - 1; t >= 0; --t) {
    const int64_t now = t % 2, after = (t + 1) % 2;
    for (int64_t e = threadIdx.x; e < slots; e += blockDim.x) {
      const Slot s = slot_of(e, n_channels, rows_per_block);
      if (s.row >= p.n_rows) continue;
      const int64_t row = s.row * n_time, i = s.channel, local = s.local * n_channels;
      hist[now * slots + e] = t > 0 ? load(p.h + (row + t - 1) * n_channels + i) : load(p.h0 + s.row * n_channels + i);
      scalar_t total = load(p.grad_h + (row + t) * n_channels + i);
      scalar_t out;
      if (t + 1 < n_time) {
        // h[t] is this slot's own entry of hist from the step before.
        out = hist[after * slots + e];
        total += structure.transposed_times(transposed_matrix(structure, s.row), i, delta + after * slots + local);
        const double next = static_cast<double>(delta[after * slots + e]);
        const scalar_t* h_t = hist + after * slots + local;
        structure.entries(i, [&](int64_t k, int64_t j) { sums.add(s, k, next * static_cast<double>(h_t[j])); });
      } else {
        out = load(p.h + (row + t) * n_channels + i);
      }
      const scalar_t d = adjoint(total, out, p.nonlinearity);
      delta[now * slots + e] = d;
      store(p.grad_u + (row + t) * n_channels + i, d);
    }
    __syncthreads();  // delta[t] and h[t-1] complete before step t - 1 reads them
  }
  // delta[0] and h[-1] = h0 are in buffer 0: their sums, grad_h0 = A^T delta[0].
  for (int64_t e = threadIdx.x; e < slots; e += blockDim.x) {
    const Slot s = slot_of(e, n_channels, rows_per_block);
    if (s.row >= p.n_rows) continue;
    const int64_t i = s.channel, local = s.local * n_channels;
    const double first = static_cast<double>(delta[e]);
    const scalar_t* h_before = hist + local;
    structure.entries(i, [&](int64_t k, int64_t j) { sums.add(s, k, first * static_cast<double>(h_before[j])); });
    store(p.grad_h0 + s.row * n_channels + i,
          structure.transposed_times(transposed_matrix(structure, s.row), i, delta + local));
    structure.all_entries(i, [&](int64_t k) { sums.flush(s, k); });
  }
}

// out[m, e] = sum over the rows of matrix m, in row order.
__global__ void reduce_rows_kernel(const double* per_row, const int64_t* rows, const int64_t* start, double* out,
                                   int64_t n_entries) {
  const int64_t m = blockIdx.y;
  const int64_t first = load(start + m), last = load(start + m + 1);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n_entries;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double total = 0.0;
    for (int64_t q = first; q < last; ++q) total += load(per_row + load(rows + q) * n_entries + e);
    store(out + m * n_entries + e, total);
  }
}

// ---------------------------------------------------------------------------
// Launchers.

size_t shared_limit() {
#ifdef FILTERBANK_EMULATE
  return filterbank_emulation::kMaxSharedBytes;
#else
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
    return 48 * 1024;
  }
  return static_cast<size_t>(bytes);
#endif
}

// Rows per block: enough for kRowThreads slots when C is small, at most N.
int rows_per_block(int64_t n_rows, int64_t n_channels) {
  int64_t rows = n_channels < kRowThreads ? kRowThreads / n_channels : 1;
  if (rows > n_rows) rows = n_rows;
  return static_cast<int>(rows < 1 ? 1 : rows);
}

int threads_for(int64_t slots) {
  const int64_t warps = (slots + 31) / 32;
  return static_cast<int>(warps * 32 < kMaxThreads ? warps * 32 : kMaxThreads);
}

template <typename Kernel, typename scalar_t, typename... Extra>
cudaError_t launch(Kernel kernel, const CoupledParams<scalar_t>& p, int rows, size_t smem, cudaStream_t stream,
                   Extra... extra) {
  if (smem > shared_limit()) return cudaErrorInvalidValue;
  const cudaError_t error =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (error != cudaSuccess) return error;
  const int64_t blocks = (p.n_rows + rows - 1) / rows;
  const int threads = threads_for(static_cast<int64_t>(rows) * p.n_channels);
#ifdef FILTERBANK_EMULATE
  (void)stream;
  return FILTERBANK_LAUNCH(kernel, dim3(static_cast<unsigned>(blocks)), dim3(threads), smem, stream, p, rows,
                           extra...);
#else
  kernel<<<dim3(static_cast<unsigned>(blocks)), dim3(threads), smem, stream>>>(p, rows, extra...);
  return cudaGetLastError();
#endif
}

template <typename scalar_t, template <typename> class Structure>
cudaError_t launch_forward(const CoupledParams<scalar_t>& p, cudaStream_t stream) {
  if (p.n_rows == 0 || p.n_time == 0 || p.n_channels == 0) return cudaSuccess;
  int rows = rows_per_block(p.n_rows, p.n_channels);
  const size_t per_row = 2 * p.n_channels * sizeof(scalar_t);
  if (rows * per_row > shared_limit()) rows = 1;
  return launch(forward_kernel<scalar_t, Structure>, p, rows, rows * per_row, stream);
}

template <typename scalar_t, template <typename> class Structure>
cudaError_t launch_backward(const CoupledParams<scalar_t>& p, cudaStream_t stream) {
  if (p.n_rows == 0 || p.n_time == 0 || p.n_channels == 0) return cudaSuccess;
  const int64_t entries = Structure<scalar_t>{p}.n_entries();
  const auto bytes = [&](int rows, bool sums_shared) {
    const size_t scalars = (4 * rows * p.n_channels * sizeof(scalar_t) + sizeof(double) - 1) / sizeof(double);
    return (scalars + (sums_shared ? rows * entries : 0)) * sizeof(double);
  };
  // Grouped rows with their sums in shared memory; else one row with them;
  // else one row with its sums in global memory.
  int rows = rows_per_block(p.n_rows, p.n_channels);
  bool sums_shared = true;
  if (bytes(rows, true) > shared_limit()) rows = 1;
  if (bytes(rows, true) > shared_limit()) sums_shared = false;
  return launch(backward_kernel<scalar_t, Structure>, p, rows, bytes(rows, sums_shared), stream, sums_shared);
}

}  // namespace
}  // namespace coupled_detail

template <typename scalar_t>
cudaError_t launch_banded_forward(const CoupledParams<scalar_t>& params, cudaStream_t stream) {
  return coupled_detail::launch_forward<scalar_t, coupled_detail::Banded>(params, stream);
}
template <typename scalar_t>
cudaError_t launch_banded_backward(const CoupledParams<scalar_t>& params, cudaStream_t stream) {
  return coupled_detail::launch_backward<scalar_t, coupled_detail::Banded>(params, stream);
}
template <typename scalar_t>
cudaError_t launch_csr_forward(const CoupledParams<scalar_t>& params, cudaStream_t stream) {
  return coupled_detail::launch_forward<scalar_t, coupled_detail::Sparse>(params, stream);
}
template <typename scalar_t>
cudaError_t launch_csr_backward(const CoupledParams<scalar_t>& params, cudaStream_t stream) {
  return coupled_detail::launch_backward<scalar_t, coupled_detail::Sparse>(params, stream);
}

cudaError_t launch_reduce_rows(const double* per_row, const int64_t* rows, const int64_t* start, double* out,
                               int64_t n_matrices, int64_t n_entries, cudaStream_t stream) {
  if (n_matrices == 0 || n_entries == 0) return cudaSuccess;
  constexpr int kThreadsReduce = 256;
  const int64_t wanted = (n_entries + kThreadsReduce - 1) / kThreadsReduce;
  const dim3 grid(static_cast<unsigned>(wanted < 4096 ? wanted : 4096), static_cast<unsigned>(n_matrices));
#ifdef FILTERBANK_EMULATE
  (void)stream;
  return FILTERBANK_LAUNCH(coupled_detail::reduce_rows_kernel, grid, dim3(kThreadsReduce), 0, stream, per_row, rows,
                           start, out, n_entries);
#else
  coupled_detail::reduce_rows_kernel<<<grid, dim3(kThreadsReduce), 0, stream>>>(per_row, rows, start, out,
                                                                                n_entries);
  return cudaGetLastError();
#endif
}

int64_t max_coupled_channels(int itemsize) {
  return static_cast<int64_t>(coupled_detail::shared_limit() / (4 * static_cast<size_t>(itemsize)));
}

template cudaError_t launch_banded_forward<float>(const CoupledParams<float>&, cudaStream_t);
template cudaError_t launch_banded_forward<double>(const CoupledParams<double>&, cudaStream_t);
template cudaError_t launch_banded_backward<float>(const CoupledParams<float>&, cudaStream_t);
template cudaError_t launch_banded_backward<double>(const CoupledParams<double>&, cudaStream_t);
template cudaError_t launch_csr_forward<float>(const CoupledParams<float>&, cudaStream_t);
template cudaError_t launch_csr_forward<double>(const CoupledParams<double>&, cudaStream_t);
template cudaError_t launch_csr_backward<float>(const CoupledParams<float>&, cudaStream_t);
template cudaError_t launch_csr_backward<double>(const CoupledParams<double>&, cudaStream_t);

}  // namespace filterbank
