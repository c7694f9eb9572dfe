// The pieces of the time-parallel scan (docs/design.md, "Time-parallel scan
// (GPU)") that iir_scan.cu's kernels are built from: global-memory access
// (counted by the emulation), the look-back's flags, one sample through a
// group of sections forwards and its adjoint backwards, and what combines
// chunks in float64: the carried basis, the powers of the chunk transition,
// the scan over a tile's chunks, the look-back across tiles and each chunk's
// true start. Included by iir_scan.cu inside namespace filterbank::{anon}.
#pragma once

constexpr int kLogThreads = 7;
static_assert((1 << kLogThreads) == kThreads, "kThreads must be 2^kLogThreads");
constexpr int kPowers = kLogThreads + 1;  // M^(2^m), m = 0..kLogThreads; the last is the tile's transition
static_assert(chunk_length<double>() >= kMaxOrder, "a chunk must hold a full history");

#ifdef FILTERBANK_EMULATE
inline unsigned char* dynamic_shared() { return static_cast<unsigned char*>(FILTERBANK_DYNAMIC_SHARED()); }
#define FILTERBANK_LAUNCH_KERNEL(kernel, blocks, smem, stream, params) \
  ((void)(stream), FILTERBANK_LAUNCH(kernel, dim3(blocks), dim3(kThreads), smem, stream, params))
#else
__device__ __forceinline__ unsigned char* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char filterbank_shared[];
  return filterbank_shared;
}
#define FILTERBANK_COUNT_READ(bytes)
#define FILTERBANK_COUNT_WRITE(bytes)
#define FILTERBANK_LAUNCH_KERNEL(kernel, blocks, smem, stream, params) \
  (kernel<<<dim3(blocks), dim3(kThreads), smem, stream>>>(params), cudaGetLastError())
#endif

// Global memory goes through these (the emulation counts the bytes).
template <typename T>
__device__ __forceinline__ T load(const T* address) {
  FILTERBANK_COUNT_READ(sizeof(T));
  return *address;
}
template <typename T>
__device__ __forceinline__ void store(T* address, T value) {
  FILTERBANK_COUNT_WRITE(sizeof(T));
  *address = value;
}

// The look-back's flags and states: published with release, read with
// acquire, bypassing L1 (another block wrote them).
__device__ __forceinline__ int load_flag(const int* address) {
  FILTERBANK_COUNT_READ(sizeof(int));
#ifdef FILTERBANK_EMULATE
  return std::atomic_ref<int>(*const_cast<int*>(address)).load(std::memory_order_acquire);
#else
  const int value = *reinterpret_cast<const volatile int*>(address);
  __threadfence();
  return value;
#endif
}
__device__ __forceinline__ void store_flag(int* address, int value) {
  FILTERBANK_COUNT_WRITE(sizeof(int));
#ifdef FILTERBANK_EMULATE
  std::atomic_ref<int>(*address).store(value, std::memory_order_release);
#else
  __threadfence();
  atomicExch(address, value);
#endif
}
__device__ __forceinline__ double load_published(const double* address) {
  FILTERBANK_COUNT_READ(sizeof(double));
#ifdef FILTERBANK_EMULATE
  return *address;
#else
  return __ldcg(address);
#endif
}

// Shared memory rows are padded by one element per chunk, so that the
// threads of a warp, each reading its own chunk, hit different banks.
template <typename scalar_t>
__device__ __forceinline__ int padded(int local) {
  return local + local / chunk_length<scalar_t>();
}
template <typename scalar_t>
__host__ __device__ constexpr int padded_tile() {
  return tile_length<scalar_t>() + kThreads;
}

// ---------------------------------------------------------------------------
// One sample through the group, in any arithmetic type V.

// Forward: h (N) the sections' output histories, xh (K) the input history;
// returns the last section's output, every section's output in out (S).
// zi (S * K, or nullptr) is added to y_s[t] for 0 <= t < K.
template <typename V, int K, int S>
__device__ __forceinline__ V forward_step(const V (&bn)[S][K + 1], const V (&an)[S][K + 1], V (&h)[K * S],
                                          V (&xh)[K], V in, const V* zi, int64_t t, V (&out)[S]) {
#pragma unroll
  for (int s = 0; s < S; ++s) {
    // Section s reads the input history xh (s = 0) or section s - 1's output
    // history, which is shifted only now, after its last reader.
    V* in_history = s == 0 ? xh : h + (s - 1) * K;
    V v = bn[s][0] * in;
#pragma unroll
    for (int k = 1; k <= K; ++k) v += bn[s][k] * in_history[k - 1];
#pragma unroll
    for (int k = 1; k <= K; ++k) v -= an[s][k] * h[s * K + k - 1];
    if (zi != nullptr && t >= 0 && t < K) v += zi[s * K + t];
#pragma unroll
    for (int k = K - 1; k > 0; --k) in_history[k] = in_history[k - 1];
    in_history[0] = in;
    out[s] = v;
    in = v;
  }
#pragma unroll
  for (int k = K - 1; k > 0; --k) h[(S - 1) * K + k] = h[(S - 1) * K + k - 1];
  h[(S - 1) * K] = in;
  return in;
}

// Adjoint, backwards in time: U (N), U[s * K + k] = u_s[t + 1 + k]; g the
// gradient of the last section's output at t; inject (2 * S, or nullptr):
// zf's gradient, added to section s's g (inject[2s]) and to the gradient of
// its input (inject[2s + 1]). Returns the gradient of the group's input at
// t, u_s[t] in u (S).
template <typename V, int K, int S>
__device__ __forceinline__ V adjoint_step(const V (&bn)[S][K + 1], const V (&an)[S][K + 1], V (&U)[K * S], V g,
                                          const V* inject, V (&u)[S]) {
#pragma unroll
  for (int s = S - 1; s >= 0; --s) {
    V v = inject != nullptr ? g + inject[2 * s] : g;
#pragma unroll
    for (int k = 1; k <= K; ++k) v -= an[s][k] * U[s * K + k - 1];
    V grad_in = bn[s][0] * v;
#pragma unroll
    for (int k = 1; k <= K; ++k) grad_in += bn[s][k] * U[s * K + k - 1];
    if (inject != nullptr) grad_in += inject[2 * s + 1];
#pragma unroll
    for (int k = K - 1; k > 0; --k) U[s * K + k] = U[s * K + k - 1];
    U[s * K] = v;
    u[s] = v;
    g = grad_in;
  }
  return g;
}

// ---------------------------------------------------------------------------
// Combining chunks, in float64.

__host__ __device__ constexpr int binomial(int n, int k) {
  int value = 1;
  for (int j = 1; j <= k; ++j) value = value * (n - k + j) / j;
  return value;
}

__host__ __device__ constexpr int log2_exact(int n) { return n <= 1 ? 0 : 1 + log2_exact(n / 2); }

// The basis the chunks' states are combined in. A section's output history
// h_0..h_{K-1} (h_j = y[t - 1 - j]) is carried as its repeated differences
// c_k = ((1 - sigma E)^k h)_0 = sum_{j<=k} C(k, j) (-sigma)^j h_j, sigma = +1
// when the poles lie to the right (their sum -a_1 >= 0), else -1. For poles
// near z = sigma the history's entries nearly agree and the powers of the
// companion matrix cancel catastrophically in float64 (low bands, poles near
// the unit circle); in differences they do not. The inverse is
// h_k = sigma^k sum_{j<=k} C(k, j) (-1)^j c_j.
template <int K, int kBlocks>
struct CarriedBasis {
  static constexpr int N = K * kBlocks;
  double sigma[kBlocks];

  // Blocks take the sigma of section first_section + block (clamped at 0:
  // the forward's input history goes with the first section).
  template <int S>
  __device__ __forceinline__ CarriedBasis(const double (&ad)[S][K + 1], int first_section) {
#pragma unroll
    for (int block = 0; block < kBlocks; ++block) {
      const int s = first_section + block < 0 ? 0 : first_section + block;
      sigma[block] = -ad[s][1] >= 0 ? 1.0 : -1.0;
    }
  }
  // Entries of the block-diagonal transform (c = T h) and of its inverse.
  __device__ __forceinline__ double forward(int r, int c) const {
    if (r / K != c / K || c % K > r % K) return 0.0;
    const int k = r % K, j = c % K;
    return binomial(k, j) * (j % 2 ? -sigma[r / K] : 1.0);
  }
  __device__ __forceinline__ double inverse(int r, int c) const {
    if (r / K != c / K || c % K > r % K) return 0.0;
    const int k = r % K, j = c % K;
    return binomial(k, j) * (k % 2 ? sigma[r / K] : 1.0) * (j % 2 ? -1.0 : 1.0);
  }
  template <typename V>
  __device__ __forceinline__ void to_carried(const V (&h)[N], double (&c)[N]) const {
#pragma unroll
    for (int r = 0; r < N; ++r) {
      double acc = 0;
#pragma unroll
      for (int j = 0; j < K; ++j) acc += forward(r, (r / K) * K + j) * static_cast<double>(h[(r / K) * K + j]);
      c[r] = acc;
    }
  }
  template <typename V>
  __device__ __forceinline__ void from_carried(const double (&c)[N], V (&h)[N]) const {
#pragma unroll
    for (int r = 0; r < N; ++r) {
      double acc = 0;
#pragma unroll
      for (int j = 0; j < K; ++j) acc += inverse(r, (r / K) * K + j) * c[(r / K) * K + j];
      h[r] = static_cast<V>(acc);
    }
  }
};

// pw[m] = M^(2^m) (N x N row-major, m = 0..kLogThreads) in the carried
// basis, M = F^chunk. Thread n < N runs the zero-input recursion one step
// from the n-th unit history (column n of F), F is changed to the carried
// basis, then squared log2(chunk) times into M and once per level after.
template <int N, int kChunk, typename Step, typename Basis>
__device__ __forceinline__ void chunk_powers(double* pw, Step zero_input_step, const Basis& basis) {
  static_assert((1 << log2_exact(kChunk)) == kChunk, "chunks of 2^k samples");
  const int i = threadIdx.x;
  double* F = pw + (kPowers - 1) * N * N;  // scratch until the last levels
  double* scratch = pw + (kPowers - 2) * N * N;
  if (i < N) {
    double v[N];
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = k == i ? 1.0 : 0.0;
    zero_input_step(v);
#pragma unroll
    for (int k = 0; k < N; ++k) F[k * N + i] = v[k];
  }
  __syncthreads();
  for (int e = i; e < N * N; e += kThreads) {
    const int r = e / N, c = e % N;
    double acc = 0;
#pragma unroll
    for (int l = 0; l < N; ++l) acc += basis.forward(r, l) * F[l * N + c];
    scratch[e] = acc;
  }
  __syncthreads();
  for (int e = i; e < N * N; e += kThreads) {
    const int r = e / N, c = e % N;
    double acc = 0;
#pragma unroll
    for (int l = 0; l < N; ++l) acc += scratch[r * N + l] * basis.inverse(l, c);
    F[e] = acc;
  }
  __syncthreads();
  const double* source = F;
#pragma unroll 1
  for (int q = 0; q < log2_exact(kChunk); ++q) {
    double* target = q == log2_exact(kChunk) - 1 ? pw : (source == F ? scratch : F);
    for (int e = i; e < N * N; e += kThreads) {
      const int r = e / N, c = e % N;
      double acc = 0;
#pragma unroll
      for (int l = 0; l < N; ++l) acc += source[r * N + l] * source[l * N + c];
      target[e] = acc;
    }
    __syncthreads();
    source = target;
  }
#pragma unroll 1
  for (int m = 1; m < kPowers; ++m) {
    const double* P = pw + (m - 1) * N * N;
    for (int e = i; e < N * N; e += kThreads) {
      const int r = e / N, c = e % N;
      double acc = 0;
#pragma unroll
      for (int l = 0; l < N; ++l) acc += P[r * N + l] * P[l * N + c];
      pw[m * N * N + e] = acc;
    }
    __syncthreads();
  }
}

template <int N>
__device__ __forceinline__ void mat_vec_add(const double* P, const double (&w)[N], double (&v)[N]) {
#pragma unroll
  for (int r = 0; r < N; ++r) {
    double acc = 0;
#pragma unroll
    for (int c = 0; c < N; ++c) acc += P[r * N + c] * w[c];
    v[r] += acc;
  }
}

// Inclusive scan over the tile's chunks in logical order lambda:
// v <- sum_{j <= lambda} M^(lambda - j) e_j (Hillis-Steele, double-buffered,
// one barrier a level). buf: 2 * N * kThreads. Returns the buffer holding the
// result, laid out [k * kThreads + lambda].
template <int N>
__device__ __forceinline__ double* scan_chunks(double (&v)[N], int lambda, double* buf, const double* pw) {
  double* source = buf;
  double* target = buf + N * kThreads;
#pragma unroll
  for (int k = 0; k < N; ++k) source[k * kThreads + lambda] = v[k];
  __syncthreads();
#pragma unroll 1
  for (int m = 0; m < kLogThreads; ++m) {
    const int d = 1 << m;
    if (lambda >= d) {
      double w[N];
#pragma unroll
      for (int k = 0; k < N; ++k) w[k] = source[k * kThreads + lambda - d];
      mat_vec_add<N>(pw + m * N * N, w, v);
    }
#pragma unroll
    for (int k = 0; k < N; ++k) target[k * kThreads + lambda] = v[k];
    __syncthreads();
    double* swap = source;
    source = target;
    target = swap;
  }
  return source;
}

// The tile's start state by decoupled look-back (one thread): publish the
// tile's aggregate (its end state from a zero start), walk over the previous
// tiles (tile - direction, ...) adding T^d times their aggregates until one
// has published its end state, publish this tile's end state T S + aggregate.
// state: (n_tiles, 2, N) for this channel (slot 0 aggregate, slot 1 end
// state, so that a reader never sees one overwritten by the other).
template <int N>
__device__ __forceinline__ void look_back(double* state, int* flag, int64_t tile, int direction, int64_t n_tiles,
                                          const double (&aggregate)[N], const double* T, double (&start)[N],
                                          double* scratch) {
#pragma unroll
  for (int k = 0; k < N; ++k) store(state + (tile * 2) * N + k, aggregate[k]);
  store_flag(flag + tile, 1);
  // T^d and the next power, in shared scratch (2 N^2): one thread's N x N
  // matrices would not fit in registers.
  double* power = scratch;
  double* next = scratch + N * N;
  for (int e = 0; e < N * N; ++e) power[e] = e / N == e % N ? 1.0 : 0.0;
#pragma unroll
  for (int k = 0; k < N; ++k) start[k] = 0;
  for (int64_t q = tile - direction; q >= 0 && q < n_tiles; q -= direction) {
    int published;
    while ((published = load_flag(flag + q)) == 0) {
      __nanosleep(32);
    }
    const double* slot = state + (q * 2 + (published == 2 ? 1 : 0)) * N;
    double value[N];
#pragma unroll
    for (int k = 0; k < N; ++k) value[k] = load_published(slot + k);
#pragma unroll 1
    for (int r = 0; r < N; ++r) {
      double acc = 0;
#pragma unroll
      for (int c = 0; c < N; ++c) acc += power[r * N + c] * value[c];
      start[r] += acc;
    }
    if (published == 2) break;
#pragma unroll 1
    for (int e = 0; e < N * N; ++e) {
      const int r = e / N, c = e % N;
      double acc = 0;
#pragma unroll 1
      for (int l = 0; l < N; ++l) acc += power[r * N + l] * T[l * N + c];
      next[e] = acc;
    }
    double* swap = power;
    power = next;
    next = swap;
  }
  double end[N];
#pragma unroll
  for (int k = 0; k < N; ++k) end[k] = aggregate[k];
  mat_vec_add<N>(T, start, end);
#pragma unroll
  for (int k = 0; k < N; ++k) store(state + (tile * 2 + 1) * N + k, end[k]);
  store_flag(flag + tile, 2);
}

// Chunk lambda's true start state: L_{lambda-1} + M^lambda S, with M^lambda
// from the binary digits of lambda.
template <int N>
__device__ __forceinline__ void chunk_start(const double* prefix, int lambda, const double* pw,
                                            const double (&tile_start)[N], double (&start)[N]) {
  double carried[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    start[k] = lambda > 0 ? prefix[k * kThreads + lambda - 1] : 0.0;
    carried[k] = tile_start[k];
  }
#pragma unroll 1
  for (int m = 0; m < kLogThreads; ++m) {
    if ((lambda >> m) & 1) {
      double next[N];
#pragma unroll
      for (int k = 0; k < N; ++k) next[k] = 0;
      mat_vec_add<N>(pw + m * N * N, carried, next);
#pragma unroll
      for (int k = 0; k < N; ++k) carried[k] = next[k];
    }
  }
#pragma unroll
  for (int k = 0; k < N; ++k) start[k] += carried[k];
}
