// CUDA kernels behind filterbank::iir_cascade: one IIR section per channel by
// a time-parallel chunked scan, and the fused reductions of the backward.
//
// The scan (docs/design.md, "Time-parallel scan (GPU)"). A section's state is
// its output history s = (y[t-1], ..., y[t-K]); with no input it evolves as
// s' = A s (A the companion matrix of a). Time is cut into chunks of
// kChunk samples, one per thread, and chunks into tiles of kThreads chunks,
// one tile per block. Levels:
//   1. chunk-local recurrence: each thread runs its chunk from zero state
//      (reading the true input history), giving the chunk's end state e_i;
//   2. carry propagation: the true end states E_i = M E_{i-1} + e_i,
//      M = A^kChunk, by a Hillis-Steele scan over the block with the powers
//      M^(2^m) precomputed per channel (powers_kernel); the tiles' end states
//      are chained the same way, kThreads tiles at a time (tile_carry_kernel);
//   3. correction: each thread reruns its chunk from its true start state
//      and writes the outputs, staged through shared memory so that the
//      block's stores are coalesced (scan_kernel with kFinal).
// Input is read twice (levels 1 and 3) and the output written once; for a
// filterbank the input is shared by many channels and stays in L2.
//
// zi (scipy's transposed-direct-form-II state) enters as y[t] += zi[t] for
// t < K with zero history, which is what that state means for direct form.
#include "iir_scan.h"

#include <cuda_runtime.h>

namespace filterbank {

int scan_levels(int64_t /*n_time*/) {
  // Levels 0..7 scan the chunks of a tile (offsets 1..128 chunks), levels
  // 8..15 the tiles of a round in tile_carry_kernel (offsets 1..128 tiles).
  return 16;
}

namespace {

constexpr int kLogThreads = 8;
static_assert((1 << kLogThreads) == kThreads, "kThreads must be 2^kLogThreads");
static_assert(kChunk >= kMaxOrder, "a chunk must hold a full output history");
constexpr int kRow = kChunk + 1;  // padded row: thread i's chunk, conflict-free

// Channel of this block: grid.y and grid.z together, so that more than 65535
// channels fit.
__device__ __forceinline__ int64_t block_channel() {
  return static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y;
}

// Level 1 and 3: run one chunk. s: output history in, end state out;
// hx: input history (x[t0-1], ..., x[t0-K]). Outputs go to out[tt] when
// kStore. Length len <= kChunk; t0 is the chunk's first logical time.
template <typename scalar_t, int K, bool kStore>
__device__ __forceinline__ void run_chunk(const scalar_t* __restrict__ xrow_smem, scalar_t* out,
                                          const scalar_t (&bn)[K + 1], const scalar_t (&an)[K + 1],
                                          const scalar_t* __restrict__ zi, scalar_t (&hx)[K], scalar_t (&s)[K],
                                          int64_t t0, int len) {
#pragma unroll
  for (int tt = 0; tt < kChunk; ++tt) {
    if (tt < len) {
      const scalar_t xv = xrow_smem[tt];
      scalar_t v = bn[0] * xv;
#pragma unroll
      for (int k = 1; k <= K; ++k) v += bn[k] * hx[k - 1];
#pragma unroll
      for (int k = 1; k <= K; ++k) v -= an[k] * s[k - 1];
      if (zi != nullptr && t0 + tt < K) v += zi[t0 + tt];
#pragma unroll
      for (int k = K - 1; k > 0; --k) {
        hx[k] = hx[k - 1];
        s[k] = s[k - 1];
      }
      hx[0] = xv;
      s[0] = v;
      if constexpr (kStore) out[tt] = v;
    }
  }
}

// Level 2: inclusive scan of v_i <- v_i + P_m v_{i - 2^m} over the block,
// P_m = pw[m] (K x K, row-major). buf: K * kThreads scalars, laid out
// [k * kThreads + i] (conflict-free).
template <typename scalar_t, int K>
__device__ __forceinline__ void block_scan(scalar_t (&v)[K], scalar_t* buf, const scalar_t* pw) {
  const int i = threadIdx.x;
#pragma unroll 1
  for (int m = 0; m < kLogThreads; ++m) {
    const int d = 1 << m;
#pragma unroll
    for (int k = 0; k < K; ++k) buf[k * kThreads + i] = v[k];
    __syncthreads();
    if (i >= d) {
      scalar_t w[K];
#pragma unroll
      for (int k = 0; k < K; ++k) w[k] = buf[k * kThreads + i - d];
      const scalar_t* P = pw + m * K * K;
#pragma unroll
      for (int r = 0; r < K; ++r) {
        scalar_t acc = 0;
#pragma unroll
        for (int c = 0; c < K; ++c) acc += P[r * K + c] * w[c];
        v[r] += acc;
      }
    }
    __syncthreads();
  }
}

// Powers (A^kChunk)^(2^m), m = 0..n_levels-1, one block of K*K threads per
// channel, one matrix entry per thread.
template <typename scalar_t, int K>
__global__ void powers_kernel(SectionParams<scalar_t> p) {
  const int64_t ch = block_channel();
  if (ch >= p.n_channels) return;
  __shared__ scalar_t A[K * K];
  __shared__ scalar_t cur[K * K];
  const int e = threadIdx.x;
  const int r = e / K, c = e % K;
  const scalar_t* a = p.a + ch * (K + 1);
  if (e < K * K) {
    // Companion matrix of the output history: row 0 is (-a1, ..., -aK), row
    // r >= 1 shifts (s'[r] = s[r - 1]).
    const scalar_t value = r == 0 ? -a[c + 1] : (c == r - 1 ? scalar_t(1) : scalar_t(0));
    A[e] = value;
    cur[e] = value;
  }
  __syncthreads();
  // M = A^kChunk: cur <- A cur, kChunk - 1 times.
#pragma unroll 1
  for (int step = 1; step < kChunk; ++step) {
    scalar_t next = 0;
    if (e < K * K) {
#pragma unroll
      for (int l = 0; l < K; ++l) next += A[r * K + l] * cur[l * K + c];
    }
    __syncthreads();
    if (e < K * K) cur[e] = next;
    __syncthreads();
  }
  scalar_t* out = p.powers + ch * p.n_levels * K * K;
#pragma unroll 1
  for (int m = 0; m < p.n_levels; ++m) {
    if (e < K * K) out[m * K * K + e] = cur[e];
    scalar_t next = 0;
    if (e < K * K) {
#pragma unroll
      for (int l = 0; l < K; ++l) next += cur[r * K + l] * cur[l * K + c];
    }
    __syncthreads();
    if (e < K * K) cur[e] = next;
    __syncthreads();
  }
}

template <typename scalar_t>
__device__ __forceinline__ int64_t physical(const SectionParams<scalar_t>& p, int64_t t) {
  return p.reverse ? p.n_time - 1 - t : t;
}

// Shared memory of scan_kernel, in scalars.
template <int K>
constexpr int scan_smem_scalars() {
  return kThreads * kRow      // the tile's input, then its output, by chunk rows
         + K * kThreads       // scan buffer
         + kLogThreads * K * K  // powers P_0..P_7
         + K;                 // input history before the tile
}

// Levels 1-3 for one tile of one channel. kFinal = false: levels 1-2 only,
// the tile's end state (from a zero start) to tile_states. kFinal = true:
// levels 1-3 from the tile's start state in tile_states, outputs to y.
template <typename scalar_t, int K, bool kFinal>
__global__ void __launch_bounds__(kThreads) scan_kernel(SectionParams<scalar_t> p) {
  const int64_t ch = block_channel();
  if (ch >= p.n_channels) return;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  scalar_t* rows = reinterpret_cast<scalar_t*>(smem_raw);
  scalar_t* buf = rows + kThreads * kRow;
  scalar_t* pw = buf + K * kThreads;
  scalar_t* tile_history = pw + kLogThreads * K * K;

  const int i = threadIdx.x;
  const int64_t tile = blockIdx.x;
  const int64_t tile_t0 = tile * kTile;
  const int64_t n_time = p.n_time;
  const scalar_t* xrow = p.x + p.x_index[ch] * p.x_row_stride;

  // Stage the tile's input (coalesced) and the K samples before it.
  for (int e = i; e < kTile; e += kThreads) {
    const int64_t t = tile_t0 + e;
    rows[(e / kChunk) * kRow + e % kChunk] = t < n_time ? xrow[physical(p, t)] : scalar_t(0);
  }
  if (i < K) {
    const int64_t t = tile_t0 - 1 - i;
    tile_history[i] = t >= 0 ? xrow[physical(p, t)] : scalar_t(0);
  }
  const scalar_t* powers = p.powers + ch * p.n_levels * K * K;
  for (int e = i; e < kLogThreads * K * K; e += kThreads) pw[e] = powers[e];
  scalar_t bn[K + 1], an[K + 1];
#pragma unroll
  for (int k = 0; k <= K; ++k) {
    bn[k] = p.b[ch * (K + 1) + k];
    an[k] = p.a[ch * (K + 1) + k];
  }
  const scalar_t* zi = p.zi != nullptr && tile == 0 ? p.zi + ch * K : nullptr;
  __syncthreads();

  // This thread's chunk and its input history (kept: the final run needs it
  // again after the rows are overwritten with outputs).
  const int64_t t0 = tile_t0 + static_cast<int64_t>(i) * kChunk;
  const int len = t0 >= n_time ? 0 : static_cast<int>(n_time - t0 < kChunk ? n_time - t0 : kChunk);
  scalar_t* my_row = rows + i * kRow;
  scalar_t hx0[K];
#pragma unroll
  for (int k = 0; k < K; ++k) hx0[k] = i == 0 ? tile_history[k] : rows[(i - 1) * kRow + kChunk - 1 - k];

  // Level 1: from zero state.
  scalar_t s[K], hx[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    s[k] = 0;
    hx[k] = hx0[k];
  }
  run_chunk<scalar_t, K, false>(my_row, nullptr, bn, an, zi, hx, s, t0, len);

  scalar_t start[K];
  if constexpr (kFinal) {
    // The tile's true start state enters through the first chunk:
    // E_0 = M S + e_0 (M = P_0).
    const scalar_t* S = p.tile_states + (ch * p.n_tiles + tile) * K;
#pragma unroll
    for (int k = 0; k < K; ++k) start[k] = S[k];
    if (i == 0) {
#pragma unroll
      for (int r = 0; r < K; ++r) {
        scalar_t acc = 0;
#pragma unroll
        for (int c = 0; c < K; ++c) acc += pw[r * K + c] * start[c];
        s[r] += acc;
      }
    }
  }
  // Level 2.
  block_scan<scalar_t, K>(s, buf, pw);

  if constexpr (!kFinal) {
    if (i == kThreads - 1) {
      scalar_t* out = p.tile_states + (ch * p.n_tiles + tile) * K;
#pragma unroll
      for (int k = 0; k < K; ++k) out[k] = s[k];
    }
  } else {
    // Level 3: thread i starts from E_{i-1} (thread 0 from the tile's state).
#pragma unroll
    for (int k = 0; k < K; ++k) buf[k * kThreads + i] = s[k];
    __syncthreads();
    if (i > 0) {
#pragma unroll
      for (int k = 0; k < K; ++k) start[k] = buf[k * kThreads + i - 1];
    }
#pragma unroll
    for (int k = 0; k < K; ++k) hx[k] = hx0[k];
    // Outputs overwrite this thread's own input row, sample by sample.
    run_chunk<scalar_t, K, true>(my_row, my_row, bn, an, zi, hx, start, t0, len);
    __syncthreads();
    scalar_t* yrow = p.y + ch * n_time;
    for (int e = i; e < kTile; e += kThreads) {
      const int64_t t = tile_t0 + e;
      if (t < n_time) yrow[physical(p, t)] = rows[(e / kChunk) * kRow + e % kChunk];
    }
  }
}

// Chains the tiles' end states into start states, kThreads tiles per round:
// S_0 = 0, S_{j+1} = T S_j + E_j with T = M^kThreads (levels 8..15 scan a
// round). One block per channel; tile_states is rewritten in place.
template <typename scalar_t, int K>
__global__ void __launch_bounds__(kThreads) tile_carry_kernel(SectionParams<scalar_t> p) {
  const int64_t ch = block_channel();
  if (ch >= p.n_channels) return;
  __shared__ scalar_t buf[K * kThreads];
  __shared__ scalar_t pw[kLogThreads * K * K];
  const int i = threadIdx.x;
  const scalar_t* powers = p.powers + (ch * p.n_levels + kLogThreads) * K * K;
  for (int e = i; e < kLogThreads * K * K; e += kThreads) pw[e] = powers[e];
  __syncthreads();
  scalar_t carry[K];
#pragma unroll
  for (int k = 0; k < K; ++k) carry[k] = 0;
  scalar_t* states = p.tile_states + ch * p.n_tiles * K;
#pragma unroll 1
  for (int64_t first = 0; first < p.n_tiles; first += kThreads) {
    const int64_t j = first + i;
    scalar_t v[K];
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = j < p.n_tiles ? states[j * K + k] : scalar_t(0);
    if (i == 0) {
#pragma unroll
      for (int r = 0; r < K; ++r) {
        scalar_t acc = 0;
#pragma unroll
        for (int c = 0; c < K; ++c) acc += pw[r * K + c] * carry[c];
        v[r] += acc;
      }
    }
    block_scan<scalar_t, K>(v, buf, pw);
#pragma unroll
    for (int k = 0; k < K; ++k) buf[k * kThreads + i] = v[k];
    __syncthreads();
    if (j < p.n_tiles) {
#pragma unroll
      for (int k = 0; k < K; ++k) states[j * K + k] = i == 0 ? carry[k] : buf[k * kThreads + i - 1];
    }
#pragma unroll
    for (int k = 0; k < K; ++k) carry[k] = buf[k * kThreads + kThreads - 1];
    __syncthreads();
  }
}

dim3 channel_grid(int64_t blocks_per_channel, int64_t n_channels) {
  const int64_t y = n_channels < 65535 ? n_channels : 65535;
  const int64_t z = (n_channels + y - 1) / y;
  return dim3(static_cast<unsigned>(blocks_per_channel), static_cast<unsigned>(y), static_cast<unsigned>(z));
}

template <typename scalar_t, int K>
cudaError_t launch_section_k(const SectionParams<scalar_t>& p, cudaStream_t stream) {
  if (p.n_channels == 0 || p.n_time == 0) return cudaSuccess;
  powers_kernel<scalar_t, K><<<channel_grid(1, p.n_channels), 64, 0, stream>>>(p);
  cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return error;
  const size_t smem = scan_smem_scalars<K>() * sizeof(scalar_t);
  for (auto kernel : {scan_kernel<scalar_t, K, false>, scan_kernel<scalar_t, K, true>}) {
    error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (error != cudaSuccess) return error;
  }
  const dim3 tiles = channel_grid(p.n_tiles, p.n_channels);
  scan_kernel<scalar_t, K, false><<<tiles, kThreads, smem, stream>>>(p);
  if ((error = cudaGetLastError()) != cudaSuccess) return error;
  tile_carry_kernel<scalar_t, K><<<channel_grid(1, p.n_channels), kThreads, 0, stream>>>(p);
  if ((error = cudaGetLastError()) != cudaSuccess) return error;
  scan_kernel<scalar_t, K, true><<<tiles, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

// ---------------------------------------------------------------------------
// Backward reductions.

constexpr int kCorrelateThreads = 256;
constexpr int kCorrelateItems = 8;  // samples per thread, at least
constexpr int kCorrelateMaxBlocks = 512;  // per channel: bounds the atomics per address

template <typename scalar_t, int K>
__global__ void __launch_bounds__(kCorrelateThreads) correlate_kernel(CorrelateParams<scalar_t> p) {
  const int64_t ch = block_channel();
  if (ch >= p.n_channels) return;
  constexpr int kSums = 2 * K + 1;
  const int64_t n_time = p.n_time;
  const scalar_t* u = p.u + ch * n_time;
  const scalar_t* x = p.x + p.x_index[ch] * p.x_row_stride;
  const scalar_t* y = p.y + ch * n_time;
  scalar_t bn[K + 1];
#pragma unroll
  for (int k = 0; k <= K; ++k) bn[k] = p.b[ch * (K + 1) + k];
  scalar_t* grad_in = p.grad_in != nullptr ? p.grad_in + ch * n_time : nullptr;

  scalar_t sums[kSums];
#pragma unroll
  for (int k = 0; k < kSums; ++k) sums[k] = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < n_time; t += stride) {
    const scalar_t ut = u[t];
#pragma unroll
    for (int k = 0; k <= K; ++k) {
      if (t - k >= 0) sums[k] += ut * x[t - k];
    }
#pragma unroll
    for (int k = 1; k <= K; ++k) {
      if (t - k >= 0) sums[K + k] += ut * y[t - k];
    }
    if (grad_in != nullptr) {
      scalar_t g = 0;
#pragma unroll
      for (int k = 0; k <= K; ++k) {
        if (t + k < n_time) g += bn[k] * u[t + k];
      }
      grad_in[t] = g;
    }
  }
  // Block reduction in double: warp shuffles, then one warp over the warps.
  __shared__ double partial[kSums][kCorrelateThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < kSums; ++k) {
    double value = static_cast<double>(sums[k]);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) partial[k][warp] = value;
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < kSums; ++k) {
      double value = lane < kCorrelateThreads / 32 ? partial[k][lane] : 0.0;
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
      if (lane == 0) atomicAdd(p.sums + ch * kSums + k, value);
    }
  }
}

template <typename scalar_t, int K>
cudaError_t launch_correlate_k(const CorrelateParams<scalar_t>& p, cudaStream_t stream) {
  if (p.n_channels == 0 || p.n_time == 0) return cudaSuccess;
  int64_t blocks = (p.n_time + kCorrelateThreads * kCorrelateItems - 1) / (kCorrelateThreads * kCorrelateItems);
  if (blocks > kCorrelateMaxBlocks) blocks = kCorrelateMaxBlocks;
  correlate_kernel<scalar_t, K><<<channel_grid(blocks, p.n_channels), kCorrelateThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

#define FILTERBANK_ORDER_CASES(LAUNCH) \
  switch (order) {                     \
    case 1: return LAUNCH(1);          \
    case 2: return LAUNCH(2);          \
    case 3: return LAUNCH(3);          \
    case 4: return LAUNCH(4);          \
    case 5: return LAUNCH(5);          \
    case 6: return LAUNCH(6);          \
    case 7: return LAUNCH(7);          \
    case 8: return LAUNCH(8);          \
    default: return cudaErrorInvalidValue; \
  }

template <typename scalar_t>
cudaError_t launch_section(const SectionParams<scalar_t>& params, int order, cudaStream_t stream) {
#define FILTERBANK_SECTION(K) launch_section_k<scalar_t, K>(params, stream)
  FILTERBANK_ORDER_CASES(FILTERBANK_SECTION)
#undef FILTERBANK_SECTION
}

template <typename scalar_t>
cudaError_t launch_correlate(const CorrelateParams<scalar_t>& params, int order, cudaStream_t stream) {
#define FILTERBANK_CORRELATE(K) launch_correlate_k<scalar_t, K>(params, stream)
  FILTERBANK_ORDER_CASES(FILTERBANK_CORRELATE)
#undef FILTERBANK_CORRELATE
}

template cudaError_t launch_section<float>(const SectionParams<float>&, int, cudaStream_t);
template cudaError_t launch_section<double>(const SectionParams<double>&, int, cudaStream_t);
template cudaError_t launch_correlate<float>(const CorrelateParams<float>&, int, cudaStream_t);
template cudaError_t launch_correlate<double>(const CorrelateParams<double>&, int, cudaStream_t);

}  // namespace filterbank
