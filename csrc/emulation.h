// Runs the CUDA kernels of this folder on CPU threads (docs/design.md,
// "Kernels without a GPU"). Compiled when FILTERBANK_EMULATE is defined, in
// place of <cuda_runtime.h>: the same kernel source then builds with g++ and
// CI executes it.
//
// A launch runs the grid's blocks one after another in linear block order; the
// threads of a block are real threads (one std::thread per CUDA thread) with a
// barrier for __syncthreads, a barrier per warp for the warp intrinsics,
// dynamic shared memory per block (filled with a NaN pattern before each
// block, so a read of shared memory nobody wrote shows up), and atomics on
// std::atomic_ref. Global memory is touched through load()/store() in
// iir_scan.cu, which count bytes here (traffic()). What this cannot show is
// timing, and races between blocks (they never overlap).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

using cudaError_t = int;
using cudaStream_t = void*;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorInvalidConfiguration = 9;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

inline const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return "unknown error";
  }
}
template <typename Kernel>
inline cudaError_t cudaFuncSetAttribute(Kernel, cudaFuncAttribute, int) { return cudaSuccess; }

namespace filterbank_emulation {

constexpr int kWarp = 32;
constexpr size_t kMaxSharedBytes = 227 * 1024;  // the opt-in limit of an H100/H200 block

// A reusable barrier for `count` threads: the last to arrive opens the next
// generation; the others wait on it (C++20 atomic wait, a futex on Linux).
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait() {
    const uint32_t generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      generation_.notify_all();
      return;
    }
    while (generation_.load(std::memory_order_acquire) == generation) {
      generation_.wait(generation, std::memory_order_acquire);
    }
  }

 private:
  const int count_;
  std::atomic<int> arrived_{0};
  std::atomic<uint32_t> generation_{0};
};

struct Warp {
  explicit Warp(int size_) : barrier(size_), size(size_) {}
  Barrier barrier;
  int size;
  uint64_t exchange[kWarp] = {};
};

// What one block's threads share.
struct Block {
  Block(int n_threads, size_t smem_bytes) : barrier(n_threads), shared(smem_bytes) {
    for (int first = 0; first < n_threads; first += kWarp) {
      warps.emplace_back(new Warp(n_threads - first < kWarp ? n_threads - first : kWarp));
    }
  }
  ~Block() {
    for (Warp* warp : warps) delete warp;
  }
  Barrier barrier;
  std::vector<Warp*> warps;
  std::vector<unsigned char> shared;
};

struct ThreadContext {
  dim3 thread_idx, block_idx, block_dim, grid_dim;
  int linear = 0;
  Block* block = nullptr;
  uint64_t bytes_read = 0, bytes_written = 0;
};

inline thread_local ThreadContext context;

// Totals since reset_traffic(), over every launch.
inline std::atomic<uint64_t> total_read{0}, total_written{0}, total_launches{0};

inline void reset_traffic() {
  total_read = 0;
  total_written = 0;
  total_launches = 0;
}

inline void count_read(size_t bytes) { context.bytes_read += bytes; }
inline void count_write(size_t bytes) { context.bytes_written += bytes; }

inline void sync_threads() { context.block->barrier.wait(); }

inline Warp& my_warp() { return *context.block->warps[context.linear / kWarp]; }

template <typename T>
T shuffle(T value, int source_lane) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles move at most 8 bytes");
  Warp& warp = my_warp();
  const int lane = context.linear % kWarp;
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  warp.exchange[lane] = bits;
  warp.barrier.wait();
  T result = value;
  if (source_lane >= 0 && source_lane < warp.size) {
    bits = warp.exchange[source_lane];
    std::memcpy(&result, &bits, sizeof(T));
  }
  warp.barrier.wait();
  return result;
}

inline void* dynamic_shared() { return context.block->shared.data(); }

// Runs kernel(args...) over the grid. Blocks in linear order (x fastest);
// every thread of the block enters each block together.
template <typename Kernel, typename... Args>
cudaError_t launch(Kernel kernel, dim3 grid, dim3 block_dim, size_t smem_bytes, Args... args) {
  const int n_threads = static_cast<int>(block_dim.x * block_dim.y * block_dim.z);
  if (n_threads <= 0 || n_threads > 1024 || smem_bytes > kMaxSharedBytes) return cudaErrorInvalidConfiguration;
  const uint64_t n_blocks = static_cast<uint64_t>(grid.x) * grid.y * grid.z;
  ++total_launches;
  if (n_blocks == 0) return cudaSuccess;
  Block block(n_threads, smem_bytes);
  std::vector<std::thread> threads;
  threads.reserve(n_threads);
  for (int t = 0; t < n_threads; ++t) {
    threads.emplace_back([&, t] {
      context = ThreadContext{};
      context.linear = t;
      context.thread_idx = dim3(t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y));
      context.block_dim = block_dim;
      context.grid_dim = grid;
      context.block = &block;
      for (uint64_t b = 0; b < n_blocks; ++b) {
        if (t == 0) std::memset(block.shared.data(), 0xff, block.shared.size());  // NaN in every float type
        context.block_idx = dim3(static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                                 static_cast<unsigned>(b / (static_cast<uint64_t>(grid.x) * grid.y)));
        block.barrier.wait();
        kernel(args...);
        block.barrier.wait();
      }
      total_read += context.bytes_read;
      total_written += context.bytes_written;
    });
  }
  for (std::thread& thread : threads) thread.join();
  return cudaSuccess;
}

}  // namespace filterbank_emulation

#define threadIdx (::filterbank_emulation::context.thread_idx)
#define blockIdx (::filterbank_emulation::context.block_idx)
#define blockDim (::filterbank_emulation::context.block_dim)
#define gridDim (::filterbank_emulation::context.grid_dim)

inline void __syncthreads() { ::filterbank_emulation::sync_threads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::filterbank_emulation::my_warp().barrier.wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) { std::this_thread::yield(); }

template <typename T>
T __shfl_sync(unsigned, T value, int lane) {
  return ::filterbank_emulation::shuffle(value, lane);
}
template <typename T>
T __shfl_down_sync(unsigned, T value, unsigned delta) {
  const int lane = ::filterbank_emulation::context.linear % ::filterbank_emulation::kWarp;
  const int source = lane + static_cast<int>(delta);
  // Out of range: the caller's own value, as on the device.
  return ::filterbank_emulation::shuffle(value, source < ::filterbank_emulation::kWarp ? source : lane);
}
template <typename T>
T __shfl_up_sync(unsigned, T value, unsigned delta) {
  const int lane = ::filterbank_emulation::context.linear % ::filterbank_emulation::kWarp;
  const int source = lane - static_cast<int>(delta);
  return ::filterbank_emulation::shuffle(value, source >= 0 ? source : lane);
}
template <typename T>
T __shfl_xor_sync(unsigned, T value, int mask) {
  const int lane = ::filterbank_emulation::context.linear % ::filterbank_emulation::kWarp;
  return ::filterbank_emulation::shuffle(value, lane ^ mask);
}

// Ballots: every lane publishes its predicate, then reads all of them.
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  unsigned bits = 0;
  for (int lane = 0; lane < ::filterbank_emulation::kWarp; ++lane) {
    const int value = ::filterbank_emulation::shuffle(predicate ? 1 : 0, lane);
    if (value && ((mask >> lane) & 1u)) bits |= 1u << lane;
  }
  return bits;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) {
  const int size = ::filterbank_emulation::my_warp().size;
  const unsigned live = size == 32 ? mask : (mask & ((1u << size) - 1));
  return (__ballot_sync(mask, predicate) & live) == live;
}

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value, std::memory_order_seq_cst);
}
template <typename T>
T atomicExch(T* address, T value) {
  return std::atomic_ref<T>(*address).exchange(value, std::memory_order_seq_cst);
}

// The launch, written once for both builds.
#define FILTERBANK_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::filterbank_emulation::launch(kernel, grid, block, smem, __VA_ARGS__)
#define FILTERBANK_DYNAMIC_SHARED() (::filterbank_emulation::dynamic_shared())
#define FILTERBANK_COUNT_READ(bytes) ::filterbank_emulation::count_read(bytes)
#define FILTERBANK_COUNT_WRITE(bytes) ::filterbank_emulation::count_write(bytes)
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
