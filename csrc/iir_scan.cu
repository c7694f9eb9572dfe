// Kernels behind filterbank::iir_cascade on CUDA tensors: a whole group of
// sections in one time-parallel pass, and its fused backward
// (docs/design.md, "Time-parallel scan (GPU)").
//
// The forward's state is the group's input history and every section's
// output history, K * (S + 1) values; with zero input it evolves by a fixed
// matrix F. A block takes one input row, a slice of the channels that read
// it, and one tile of kThreads chunks; each thread one chunk:
//   1. the tile's input is staged in shared memory once for all the slice's
//      channels (the input read once per distinct row and tile);
//   2. per channel, each thread runs its chunk from a zero state (no input
//      history either) in the data's precision, an ordinary recursion,
//      giving the chunk's end state e_i;
//   3. the chunks' true start states come from a scan of E_i = M E_{i-1} + e_i
//      (M = F^chunk) and the tile's start state from a decoupled look-back
//      over the previous tiles (tile transition F^tile). Everything that
//      combines chunks runs in float64, in a repeated-difference basis
//      (CarriedBasis) in which powers of F stay accurate for poles near 1;
//   4. each thread reruns its chunk from its true start state; the outputs
//      go through shared memory to coalesced stores, written once; the
//      thread that holds the last sample writes zf.
// The backward (adjoint_kernel) recomputes the forward of its tile from the
// tile start states a first, store-free pass of cascade_kernel published,
// reads grad_y once, runs the adjoint recursion backwards in time by the same
// scan and a look-back towards earlier tiles, and reduces the coefficient
// sums in float64 and the input gradient over the slice's channels inside
// the block. Deterministic: no floating-point atomics.
//
// Time is extended with virtual zero samples past the end, so every chunk
// is full: a zero state fed zeros stays zero, and outputs past the end are
// never stored.
#include "iir_scan.h"

namespace filterbank {
namespace {

#include "scan.cuh"  // the scan's device pieces, in this namespace

// ---------------------------------------------------------------------------
// Shared memory, carved the same way by the kernels and the launchers' sizes.

template <typename scalar_t, int K, int S, bool kAdjoint>
struct Layout {
  static constexpr int N = K * S;          // the adjoint's state: the sections' adjoint histories
  static constexpr int NF = K * (S + 1);   // the forward's state: the input history and the sections' histories
  static constexpr int kInfo = 8;  // int64: ticket, channel range, channel
  static constexpr int kDoubles = kPowers * NF * NF + (kAdjoint ? kPowers * N * N : 0) + 2 * NF * kThreads +
                                  2 * NF + 2 * NF * NF + (kAdjoint ? kThreads * S * (2 * K + 1) : 0);
  static constexpr int kSignals = kAdjoint ? S + 1 : 2;  // x and the outputs (forward: x and y)
  static constexpr int kScalars = kSignals * padded_tile<scalar_t>() + kSignals * K +
                                  (kAdjoint ? 2 * padded_tile<scalar_t>() : 0) + 2 * S * (K + 1) + S * K +
                                  (kAdjoint ? S * K + 2 * S * K : 0);
  static constexpr size_t bytes() {
    return kInfo * sizeof(int64_t) + kDoubles * sizeof(double) + kScalars * sizeof(scalar_t);
  }
};

// Decodes the block's work item from its ticket (blocks start in ticket
// order, which the look-back needs): row, slice, tile and the slice's
// channels [begin, end) in channel_order. reverse: tiles last to first.
template <typename scalar_t>
__device__ __forceinline__ void work_item(const CascadeParams<scalar_t>& p, int* ticket, bool reverse,
                                          int64_t* info) {
  if (threadIdx.x == 0) {
    FILTERBANK_COUNT_READ(sizeof(int));
    FILTERBANK_COUNT_WRITE(sizeof(int));
    const int64_t w = atomicAdd(ticket, 1);
    const int64_t in_row = w / p.n_tiles;
    const int64_t tile = w % p.n_tiles;
    const int64_t row = in_row / p.splits, slice = in_row % p.splits;
    const int64_t first = load(p.row_start + row), last = load(p.row_start + row + 1);
    const int64_t per_slice = (last - first + p.splits - 1) / p.splits;
    const int64_t begin = first + slice * per_slice;
    info[0] = row;
    info[1] = slice;
    info[2] = reverse ? p.n_tiles - 1 - tile : tile;
    info[3] = begin < last ? begin : last;
    info[4] = begin + per_slice < last ? begin + per_slice : last;
  }
  __syncthreads();
}

// Stages the tile of row x_row (and the K samples before it) into signal /
// history, zeros past the end.
template <typename scalar_t, int K>
__device__ __forceinline__ void stage_input(const scalar_t* row, int64_t t_begin, int64_t n_time, scalar_t* signal,
                                            scalar_t* history) {
  constexpr int kTile = tile_length<scalar_t>();
  for (int e = threadIdx.x; e < kTile; e += kThreads) {
    const int64_t t = t_begin + e;
    signal[padded<scalar_t>(e)] = t < n_time ? load(row + t) : scalar_t(0);
  }
  if (threadIdx.x < K) {
    const int64_t t = t_begin - 1 - threadIdx.x;
    history[threadIdx.x] = t >= 0 ? load(row + t) : scalar_t(0);
  }
}

// Loads channel ch's coefficients (normalised in the compute dtype) and zi
// into shared memory, then into registers. coefficients: 2 * S * (K + 1).
template <typename scalar_t, int K, int S>
__device__ __forceinline__ void load_channel(const CascadeParams<scalar_t>& p, int64_t ch, bool with_zi,
                                             scalar_t* coefficients, scalar_t* zi, scalar_t (&bn)[S][K + 1],
                                             scalar_t (&an)[S][K + 1], double (&bd)[S][K + 1],
                                             double (&ad)[S][K + 1]) {
  const int i = threadIdx.x;
  if (i < S * (K + 1)) {
    const int s = i / (K + 1), k = i % (K + 1);
    const scalar_t a0 = load(p.a + (ch * S + s) * (K + 1));
    // Reported, not checked on the host: that would wait for the device.
    if (a0 == scalar_t(0) && p.bad_channel != nullptr) store(p.bad_channel, ch + 1);
    coefficients[i] = load(p.b + ch * S * (K + 1) + i) / a0;
    coefficients[S * (K + 1) + i] = k == 0 ? scalar_t(1) : load(p.a + ch * S * (K + 1) + i) / a0;
  }
  if (i < S * K) zi[i] = with_zi && p.zi != nullptr ? load(p.zi + ch * S * K + i) : scalar_t(0);
  __syncthreads();
#pragma unroll
  for (int s = 0; s < S; ++s) {
#pragma unroll
    for (int k = 0; k <= K; ++k) {
      bn[s][k] = coefficients[s * (K + 1) + k];
      an[s][k] = coefficients[S * (K + 1) + s * (K + 1) + k];
      bd[s][k] = static_cast<double>(bn[s][k]);
      ad[s][k] = static_cast<double>(an[s][k]);
    }
  }
}

// The forward's state as one vector: the input history, then the sections'
// output histories. The chunks' zero-start runs start from no input history
// either, so that they see only their own samples (with the true input
// history and a zero output history, a high-pass would start from a transient
// many times the signal, and the carries would cancel it in rounding).
template <typename V, int K, int S>
__device__ __forceinline__ void join_state(const V (&xh)[K], const V (&h)[K * S], V (&v)[K * (S + 1)]) {
#pragma unroll
  for (int k = 0; k < K; ++k) v[k] = xh[k];
#pragma unroll
  for (int k = 0; k < K * S; ++k) v[K + k] = h[k];
}
template <typename V, int K, int S>
__device__ __forceinline__ void split_state(const V (&v)[K * (S + 1)], V (&xh)[K], V (&h)[K * S]) {
#pragma unroll
  for (int k = 0; k < K; ++k) xh[k] = v[k];
#pragma unroll
  for (int k = 0; k < K * S; ++k) h[k] = v[K + k];
}
// One zero-input step of the forward state, in float64.
template <int K, int S>
__device__ __forceinline__ void forward_zero_input(const double (&bd)[S][K + 1], const double (&ad)[S][K + 1],
                                                   double (&v)[K * (S + 1)]) {
  double xh[K], h[K * S], out[S];
  split_state<double, K, S>(v, xh, h);
  forward_step<double, K, S>(bd, ad, h, xh, 0.0, nullptr, -1, out);
  join_state<double, K, S>(xh, h, v);
}

// Thread i's forward chunk of this tile for one channel: the zero-start run
// and the scan (zero_start_scan), the true start from the tile's start state
// (true_start; cascade_kernel looks back for it in between, adjoint_kernel
// reads it), and the run itself.
template <typename scalar_t, int K, int S>
struct ForwardChunk {
  static constexpr int N = K * S;
  static constexpr int kChunk = chunk_length<scalar_t>();
  const scalar_t (&bn)[S][K + 1];
  const scalar_t (&an)[S][K + 1];
  const scalar_t* x;        // the staged tile (padded)
  const scalar_t* history;  // the K input samples before the tile
  const scalar_t* zi;       // shared, S * K (zero unless the tile holds t < K)
  int64_t t_begin;

  __device__ __forceinline__ void input_history(scalar_t (&xh)[K]) const {
    const int l0 = threadIdx.x * kChunk;
#pragma unroll
    for (int k = 0; k < K; ++k) xh[k] = l0 == 0 ? history[k] : x[padded<scalar_t>(l0 - 1 - k)];
  }
  // Levels 2-3 up to the scan: M's powers into pw, this thread's chunk from
  // a zero state (no input history either), its end state in the carried
  // basis into v, and the scan over the tile; returns the prefixes (for
  // chunk_start) and leaves the tile's aggregate in the last thread's v.
  __device__ __forceinline__ const double* zero_start_scan(const CarriedBasis<K, S + 1>& basis,
                                                          const double (&bd)[S][K + 1],
                                                          const double (&ad)[S][K + 1], double* pw, double* buf,
                                                          double (&v)[K * (S + 1)]) const {
    chunk_powers<K * (S + 1), kChunk>(pw, [&](double (&w)[K * (S + 1)]) { forward_zero_input<K, S>(bd, ad, w); },
                                      basis);
    scalar_t h[N] = {}, xh[K] = {}, state[K * (S + 1)];
    run(h, xh, [](int, int64_t, const scalar_t (&)[S], const scalar_t (&)[N], const scalar_t (&)[K]) {});
    join_state<scalar_t, K, S>(xh, h, state);
    basis.to_carried(state, v);
    return scan_chunks<K * (S + 1)>(v, threadIdx.x, buf, pw);
  }
  // This thread's true start: the output histories h from the prefixes and
  // the tile's start state (carried basis), the input history read.
  __device__ __forceinline__ void true_start(const CarriedBasis<K, S + 1>& basis, const double* prefix,
                                             const double* pw, const double* tile_start, scalar_t (&h)[N],
                                             scalar_t (&xh)[K]) const {
    double tile_state[K * (S + 1)], start[K * (S + 1)];
#pragma unroll
    for (int k = 0; k < K * (S + 1); ++k) tile_state[k] = tile_start[k];
    chunk_start<K * (S + 1)>(prefix, threadIdx.x, pw, tile_state, start);
    scalar_t state[K * (S + 1)];
    basis.from_carried(start, state);
    split_state<scalar_t, K, S>(state, xh, h);
    input_history(xh);
  }
  // Runs thread i's chunk from the histories h and xh; calls
  // each(l, t, out, h, xh) after every sample.
  template <typename Each>
  __device__ __forceinline__ void run(scalar_t (&h)[N], scalar_t (&xh)[K], Each each) const {
    const int l0 = threadIdx.x * kChunk;
#pragma unroll 4
    for (int tt = 0; tt < kChunk; ++tt) {
      const int l = l0 + tt;
      const int64_t t = t_begin + l;
      scalar_t out[S];
      forward_step<scalar_t, K, S>(bn, an, h, xh, x[padded<scalar_t>(l)], zi, t, out);
      each(l, t, out, h, xh);
    }
  }
};

// The adjoint chunk of thread i, backwards in time, from U; calls
// each(l, t, g, u) after every sample (g the input's gradient, u the
// sections' adjoints). zf's gradient enters at the last K samples.
template <typename scalar_t, int K, int S>
struct AdjointChunk {
  static constexpr int N = K * S;
  static constexpr int kChunk = chunk_length<scalar_t>();
  const scalar_t (&bn)[S][K + 1];
  const scalar_t (&an)[S][K + 1];
  const scalar_t* grad_out;  // the staged tile of grad_y (padded)
  const scalar_t* inject;    // (K, 2 S), see adjoint_kernel
  int64_t t_begin;
  int64_t n_time;

  template <typename Each>
  __device__ __forceinline__ void run(scalar_t (&U)[N], Each each) const {
    const int l0 = threadIdx.x * kChunk;
#pragma unroll 4
    for (int tt = kChunk - 1; tt >= 0; --tt) {
      const int l = l0 + tt;
      const int64_t t = t_begin + l;
      const int64_t m = n_time - 1 - t;  // samples before the end
      const scalar_t* injected = m >= 0 && m < K ? inject + m * 2 * S : nullptr;
      scalar_t u[S];
      const scalar_t g = adjoint_step<scalar_t, K, S>(bn, an, U, grad_out[padded<scalar_t>(l)], injected, u);
      each(l, t, g, u);
    }
  }
};

// ---------------------------------------------------------------------------
// Forward.

template <typename scalar_t, int K, int S>
__global__ void __launch_bounds__(kThreads) cascade_kernel(CascadeParams<scalar_t> p) {
  using L = Layout<scalar_t, K, S, false>;
  constexpr int N = L::N, NF = L::NF;
  constexpr int kTile = tile_length<scalar_t>();
  constexpr int kPadded = padded_tile<scalar_t>();
  unsigned char* raw = dynamic_shared();
  int64_t* info = reinterpret_cast<int64_t*>(raw);
  double* pw = reinterpret_cast<double*>(info + L::kInfo);
  double* buf = pw + kPowers * NF * NF;
  double* tile_start = buf + 2 * NF * kThreads;  // NF, then NF spare
  double* look_back_scratch = tile_start + 2 * NF;  // 2 NF^2
  scalar_t* xs = reinterpret_cast<scalar_t*>(look_back_scratch + 2 * NF * NF);
  scalar_t* ys = xs + kPadded;
  scalar_t* x_history = ys + kPadded;
  scalar_t* coefficients = x_history + 2 * K;
  scalar_t* zi = coefficients + 2 * S * (K + 1);

  const int i = threadIdx.x;
  work_item(p, p.ticket, false, info);
  const int64_t row = info[0], tile = info[2], begin = info[3], end = info[4];
  const int64_t t_begin = tile * kTile;
  const int64_t n_time = p.n_time;
  if (begin < end) stage_input<scalar_t, K>(p.x + row * p.x_row_stride, t_begin, n_time, xs, x_history);

  for (int64_t c = begin; c < end; ++c) {
    __syncthreads();  // the previous channel is done with shared memory
    if (i == 0) info[5] = load(p.channel_order + c);
    __syncthreads();
    const int64_t ch = info[5];
    scalar_t bn[S][K + 1], an[S][K + 1];
    double bd[S][K + 1], ad[S][K + 1];
    load_channel<scalar_t, K, S>(p, ch, tile == 0, coefficients, zi, bn, an, bd, ad);
    const CarriedBasis<K, S + 1> basis(ad, -1);
    const ForwardChunk<scalar_t, K, S> chunk{bn, an, xs, x_history, zi, t_begin};

    // Level 2 and the scan, from a zero state.
    double v[NF];
    const double* prefix = chunk.zero_start_scan(basis, bd, ad, pw, buf, v);

    // Level 3: the tile's start state, then each chunk's.
    if (i == kThreads - 1) {
      double start[NF];
      look_back<NF>(p.tile_state + ch * p.n_tiles * 2 * NF, p.tile_flag + ch * p.n_tiles, tile, 1, p.n_tiles, v,
                    pw + kLogThreads * NF * NF, start, look_back_scratch);
#pragma unroll
      for (int k = 0; k < NF; ++k) tile_start[k] = start[k];
    }
    __syncthreads();
    if (p.y == nullptr) continue;  // the backward's first pass wants the tile states only

    // Level 4: rerun from the true state (the input history read, not
    // carried); zf where the signal ends.
    scalar_t h[N], xh[K];
    chunk.true_start(basis, prefix, pw, tile_start, h, xh);
    chunk.run(h, xh, [&](int l, int64_t t, const scalar_t (&out)[S], const scalar_t (&hs)[N],
                         const scalar_t (&xhs)[K]) {
      ys[padded<scalar_t>(l)] = out[S - 1];
      if (t == n_time - 1 && p.zf != nullptr) {
        // zf_s[j] = sum_{k>j} bn_k in_s[T+j-k] - an_k y_s[T+j-k] (+ zi_s[T+j] while T+j < K),
        // with the histories just updated: in_s[T-1-m] = history[m].
#pragma unroll
        for (int s = 0; s < S; ++s) {
          const scalar_t* in_history = s == 0 ? xhs : hs + (s - 1) * K;
#pragma unroll
          for (int j = 0; j < K; ++j) {
            scalar_t value = 0;
#pragma unroll
            for (int k = j + 1; k <= K; ++k) {
              value += bn[s][k] * in_history[k - 1 - j] - an[s][k] * hs[s * K + k - 1 - j];
            }
            if (n_time + j < K) value += zi[s * K + n_time + j];
            store(p.zf + (ch * S + s) * K + j, value);
          }
        }
      }
    });
    __syncthreads();
    scalar_t* y_row = p.y + ch * n_time;
    for (int e = i; e < kTile; e += kThreads) {
      const int64_t t = t_begin + e;
      if (t < n_time) store(y_row + t, ys[padded<scalar_t>(e)]);
    }
  }
}

// ---------------------------------------------------------------------------
// Backward.

template <typename scalar_t, int K, int S>
__global__ void __launch_bounds__(kThreads) adjoint_kernel(AdjointParams<scalar_t> q) {
  using L = Layout<scalar_t, K, S, true>;
  constexpr int N = L::N, NF = L::NF;
  constexpr int kChunk = chunk_length<scalar_t>();
  constexpr int kTile = tile_length<scalar_t>();
  constexpr int kPadded = padded_tile<scalar_t>();
  constexpr int kSums = S * (2 * K + 1);
  const CascadeParams<scalar_t>& p = q.forward;
  unsigned char* raw = dynamic_shared();
  int64_t* info = reinterpret_cast<int64_t*>(raw);
  double* pw_forward = reinterpret_cast<double*>(info + L::kInfo);
  double* pw_adjoint = pw_forward + kPowers * NF * NF;
  double* buf = pw_adjoint + kPowers * N * N;  // 2 * NF * kThreads, for either scan
  double* starts = buf + 2 * NF * kThreads;  // the forward's tile start (NF), the adjoint's (N)
  double* look_back_scratch = starts + 2 * NF;  // 2 N^2 <= 2 NF^2
  double* partial = look_back_scratch + 2 * NF * NF;  // kThreads * kSums
  scalar_t* sig = reinterpret_cast<scalar_t*>(partial + kThreads * kSums);  // (S + 1) padded tiles: x, y_0..y_{S-1}
  scalar_t* history = sig + (S + 1) * kPadded;  // (S + 1) * K: the samples before the tile
  scalar_t* grad_out = history + (S + 1) * K;  // grad_y's tile
  scalar_t* grad_in = grad_out + kPadded;      // the slice's summed input gradient
  scalar_t* coefficients = grad_in + kPadded;
  scalar_t* zi = coefficients + 2 * S * (K + 1);
  scalar_t* grad_zf = zi + S * K;
  scalar_t* inject = grad_zf + S * K;  // (K, 2 S): zf's gradient at sample T - 1 - m

  const int i = threadIdx.x;
  work_item(p, q.ticket, true, info);
  const int64_t row = info[0], slice = info[1], tile = info[2], begin = info[3], end = info[4];
  const int64_t t_begin = tile * kTile;
  const int64_t n_time = p.n_time;
  if (begin < end) stage_input<scalar_t, K>(p.x + row * p.x_row_stride, t_begin, n_time, sig, history);
  for (int e = i; e < kPadded; e += kThreads) grad_in[e] = 0;
  const int l0 = i * kChunk;
  // A signal's value at local index l of this tile (l >= -K).
  auto at = [&](int s, int l) -> scalar_t {
    return l >= 0 ? sig[s * kPadded + padded<scalar_t>(l)] : history[s * K - l - 1];
  };

  for (int64_t c = begin; c < end; ++c) {
    __syncthreads();
    if (i == 0) info[5] = load(p.channel_order + c);
    __syncthreads();
    const int64_t ch = info[5];
    scalar_t bn[S][K + 1], an[S][K + 1];
    double bd[S][K + 1], ad[S][K + 1];
    load_channel<scalar_t, K, S>(p, ch, tile == 0, coefficients, zi, bn, an, bd, ad);
    // The forward's tile start state (published by the first pass) and the
    // outputs' histories before the tile; grad_y's tile; zf's gradient.
    if (i < NF) starts[i] = tile == 0 ? 0.0 : load(p.tile_state + ((ch * p.n_tiles + tile - 1) * 2 + 1) * NF + i);
    if (i < S * K) grad_zf[i] = load(q.grad_zf + ch * S * K + i);
    const scalar_t* g_row = q.grad_y + ch * n_time;
    for (int e = i; e < kTile; e += kThreads) {
      const int64_t t = t_begin + e;
      grad_out[padded<scalar_t>(e)] = t < n_time ? load(g_row + t) : scalar_t(0);
    }
    __syncthreads();
    const CarriedBasis<K, S + 1> basis(ad, -1);
    if (i == 0) {
      // The outputs' histories before the tile: y_s[t_begin - 1 - k] = h[s * K + k].
      double carried[NF], state[NF];
#pragma unroll
      for (int k = 0; k < NF; ++k) carried[k] = starts[k];
      basis.from_carried(carried, state);
#pragma unroll
      for (int k = 0; k < N; ++k) history[K + k] = static_cast<scalar_t>(state[K + k]);
    }
    if (i < K * S) {
      // inject[m][2s]: -sum_{j=0}^{K-1-m} an_s[j+1+m] gzf_s[j] onto section s's
      // gradient at T - 1 - m; inject[m][2s+1]: the same with bn onto its input's.
      const int m = i / S, s = i % S;
      scalar_t onto_out = 0, onto_in = 0;
      for (int j = 0; j + 1 + m <= K; ++j) {
        onto_out -= an[s][j + 1 + m] * grad_zf[s * K + j];
        onto_in += bn[s][j + 1 + m] * grad_zf[s * K + j];
      }
      inject[m * 2 * S + 2 * s] = onto_out;
      inject[m * 2 * S + 2 * s + 1] = onto_in;
    }

    // The forward again (from the published tile start: no look-back), every
    // section's output into sig.
    const ForwardChunk<scalar_t, K, S> chunk{bn, an, sig, history, zi, t_begin};
    double vf[NF];
    const double* prefix = chunk.zero_start_scan(basis, bd, ad, pw_forward, buf, vf);
    scalar_t h[N], xh[K];
    chunk.true_start(basis, prefix, pw_forward, starts, h, xh);
    // Other threads still read sig[0] for their input history: outputs go to
    // sig[1..S] only.
    chunk.run(h, xh, [&](int l, int64_t, const scalar_t (&out)[S], const scalar_t (&)[N], const scalar_t (&)[K]) {
#pragma unroll
      for (int s = 0; s < S; ++s) sig[(s + 1) * kPadded + padded<scalar_t>(l)] = out[s];
    });

    // The adjoint, backwards in time: chunk order reversed (lambda).
    const CarriedBasis<K, S> adjoint_basis(ad, 0);
    chunk_powers<N, kChunk>(pw_adjoint, [&](double (&w)[N]) {
      double u[S];
      adjoint_step<double, K, S>(bd, ad, w, 0.0, nullptr, u);
    }, adjoint_basis);
    const int lambda = kThreads - 1 - i;
    const AdjointChunk<scalar_t, K, S> adjoint{bn, an, grad_out, inject, t_begin, n_time};
    scalar_t U[N] = {};
    adjoint.run(U, [](int, int64_t, scalar_t, const scalar_t (&)[S]) {});
    double v[N];
    adjoint_basis.to_carried(U, v);
    const double* adjoint_prefix = scan_chunks<N>(v, lambda, buf, pw_adjoint);
    if (lambda == kThreads - 1) {
      double adjoint_start[N];
      look_back<N>(q.tile_state + ch * p.n_tiles * 2 * N, q.tile_flag + ch * p.n_tiles, tile, -1, p.n_tiles, v,
                   pw_adjoint + kLogThreads * N * N, adjoint_start, look_back_scratch);
#pragma unroll
      for (int k = 0; k < N; ++k) starts[NF + k] = adjoint_start[k];
    }
    __syncthreads();  // also: sig holds every section's output
    double tile_start[N], start[N];
#pragma unroll
    for (int k = 0; k < N; ++k) tile_start[k] = starts[NF + k];
    chunk_start<N>(adjoint_prefix, lambda, pw_adjoint, tile_start, start);
    adjoint_basis.from_carried(start, U);

    double sums[kSums] = {};
    adjoint.run(U, [&](int l, int64_t t, scalar_t g, const scalar_t (&u)[S]) {
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const double us = static_cast<double>(u[s]);
#pragma unroll
        for (int k = 0; k <= K; ++k) sums[s * (2 * K + 1) + k] += us * static_cast<double>(at(s, l - k));
#pragma unroll
        for (int k = 1; k <= K; ++k) sums[s * (2 * K + 1) + K + k] += us * static_cast<double>(at(s + 1, l - k));
        if (tile == 0 && t < K) store(q.grad_zi + (ch * S + s) * K + t, u[s]);
      }
      grad_in[padded<scalar_t>(l)] += g;  // this thread's own samples: no race across threads
    });
    if (t_begin + l0 <= n_time - 1 && n_time - 1 < t_begin + l0 + kChunk) {
      // zf's direct terms: zf_s[j] has bn_k in_s[T+j-k] - an_k y_s[T+j-k].
      const int l_end = static_cast<int>(n_time - 1 - t_begin);
#pragma unroll
      for (int s = 0; s < S; ++s) {
        for (int j = 0; j < K; ++j) {
          const double gz = static_cast<double>(grad_zf[s * K + j]);
          for (int k = j + 1; k <= K; ++k) {
            const int l = l_end + 1 + j - k;  // local index of T + j - k
            if (t_begin + l < 0) continue;
            sums[s * (2 * K + 1) + k] += gz * static_cast<double>(at(s, l));
            sums[s * (2 * K + 1) + K + k] += gz * static_cast<double>(at(s + 1, l));
          }
        }
      }
    }
    // The block's sums, in a fixed order.
#pragma unroll
    for (int k = 0; k < kSums; ++k) partial[i * kSums + k] = sums[k];
    __syncthreads();
    if (i < kSums) {
      double total = 0;
      for (int j = 0; j < kThreads; ++j) total += partial[j * kSums + i];
      store(q.sums + (ch * p.n_tiles + tile) * kSums + i, total);
    }
  }
  __syncthreads();
  // Written even for a slice without channels (zeros), so grad_x needs no memset.
  scalar_t* out = q.grad_x + (slice * p.n_rows + row) * n_time;
  for (int e = i; e < kTile; e += kThreads) {
    const int64_t t = t_begin + e;
    if (t < n_time) store(out + t, grad_in[padded<scalar_t>(e)]);
  }
}

// ---------------------------------------------------------------------------
// Launchers.

// One block per (row, slice, tile) of the work; params is the kernel's
// argument, forward its forward part (the sizes).
template <typename Kernel, typename Params, typename scalar_t>
cudaError_t launch_blocks(Kernel kernel, size_t smem, const Params& params, const CascadeParams<scalar_t>& forward,
                          cudaStream_t stream) {
  const int64_t blocks = forward.n_rows * forward.splits * forward.n_tiles;
  if (forward.n_channels == 0 || forward.n_time == 0 || blocks == 0) return cudaSuccess;
  const cudaError_t error =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (error != cudaSuccess) return error;
  return FILTERBANK_LAUNCH_KERNEL(kernel, static_cast<unsigned>(blocks), smem, stream, params);
}

template <typename scalar_t, int K, int S>
cudaError_t launch_cascade_k(const CascadeParams<scalar_t>& p, cudaStream_t stream) {
  return launch_blocks(cascade_kernel<scalar_t, K, S>, Layout<scalar_t, K, S, false>::bytes(), p, p, stream);
}

template <typename scalar_t, int K, int S>
cudaError_t launch_adjoint_k(const AdjointParams<scalar_t>& q, cudaStream_t stream) {
  return launch_blocks(adjoint_kernel<scalar_t, K, S>, Layout<scalar_t, K, S, true>::bytes(), q, q.forward, stream);
}

}  // namespace

// The (K, S) pairs with kernels: second-order sections in groups of 1, 2 or
// 4, and single sections of order 4 or 8 (the binding pads smaller orders
// and group sizes with zero coefficients and unit sections, which is exact).
#define FILTERBANK_GROUPS(CASE) CASE(2, 1) CASE(2, 2) CASE(2, 4) CASE(4, 1) CASE(8, 1)

bool has_kernel(int order, int sections) {
#define FILTERBANK_HAS(K, S) \
  if (order == K && sections == S) return true;
  FILTERBANK_GROUPS(FILTERBANK_HAS)
#undef FILTERBANK_HAS
  return false;
}

template <typename scalar_t>
cudaError_t launch_cascade(const CascadeParams<scalar_t>& params, int order, int sections, cudaStream_t stream) {
#define FILTERBANK_CASCADE(K, S) \
  if (order == K && sections == S) return launch_cascade_k<scalar_t, K, S>(params, stream);
  FILTERBANK_GROUPS(FILTERBANK_CASCADE)
#undef FILTERBANK_CASCADE
  return cudaErrorInvalidValue;
}

template <typename scalar_t>
cudaError_t launch_adjoint(const AdjointParams<scalar_t>& params, int order, int sections, cudaStream_t stream) {
#define FILTERBANK_ADJOINT(K, S) \
  if (order == K && sections == S) return launch_adjoint_k<scalar_t, K, S>(params, stream);
  FILTERBANK_GROUPS(FILTERBANK_ADJOINT)
#undef FILTERBANK_ADJOINT
  return cudaErrorInvalidValue;
}

template cudaError_t launch_cascade<float>(const CascadeParams<float>&, int, int, cudaStream_t);
template cudaError_t launch_cascade<double>(const CascadeParams<double>&, int, int, cudaStream_t);
template cudaError_t launch_adjoint<float>(const AdjointParams<float>&, int, int, cudaStream_t);
template cudaError_t launch_adjoint<double>(const AdjointParams<double>&, int, int, cudaStream_t);

}  // namespace filterbank
