// A small driver of the emulated CUDA kernels (csrc/emulation.h) for
// ThreadSanitizer: every thread of a block is a real thread, so a missing
// __syncthreads between a shared-memory write and another thread's read is a
// data race it reports. Runs the forward and the backward of a cascade of
// second-order sections over two tiles and checks the forward against a plain
// loop, so the run is not vacuous; checks the emulation's warp shuffles and
// ballots on a small kernel first. Built and run by tests/test_cuda.py:
//   g++ -std=c++20 -fsanitize=thread -DFILTERBANK_EMULATE -I csrc tests/race_driver.cpp
#include <cmath>
#include <cstdio>
#include <vector>

#include "iir_scan.cu"

// The emulation's warp layer, which the kernels do not use today: shuffles
// and ballots against what a warp computes, written to out[threadIdx.x].
__global__ void warp_kernel(int* out) {
  const int lane = threadIdx.x % 32;
  int sum = lane;
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
  const int first = __shfl_sync(0xffffffffu, sum, 0);  // lane 0 holds 0 + 1 + ... + 31
  const int up = __shfl_up_sync(0xffffffffu, lane, 1);
  const int swapped = __shfl_xor_sync(0xffffffffu, lane, 1);
  const unsigned odd = __ballot_sync(0xffffffffu, lane % 2);
  const bool ok = first == 496 && up == (lane == 0 ? 0 : lane - 1) && swapped == (lane ^ 1) &&
                  odd == 0xaaaaaaaau && __any_sync(0xffffffffu, lane == 5) && !__all_sync(0xffffffffu, lane < 31);
  out[threadIdx.x] = ok ? 1 : 0;
}

int main() {
  {
    std::vector<int> out(64, 0);
    if (FILTERBANK_LAUNCH(warp_kernel, dim3(1), dim3(64), 0, nullptr, out.data()) != cudaSuccess) return 7;
    for (int v : out) {
      if (v != 1) {
        std::printf("warp intrinsics wrong\n");
        return 8;
      }
    }
  }
  using filterbank::AdjointParams;
  using filterbank::CascadeParams;
  constexpr int K = 2, S = 2, N = K * (S + 1);
  const int64_t rows = 2, channels = 3, time = filterbank::tile_length<float>() + 100;
  const int64_t tiles = (time + filterbank::tile_length<float>() - 1) / filterbank::tile_length<float>();
  std::vector<float> x(rows * time), y(channels * time), zf(channels * S * K), zi(channels * S * K, 0.f);
  for (int64_t i = 0; i < rows * time; ++i) x[i] = std::sin(0.01f * static_cast<float>(i)) + 0.1f * (i % 7);
  std::vector<float> b, a;
  for (int64_t p = 0; p < channels; ++p) {
    for (int s = 0; s < S; ++s) {
      const float r = 0.9f + 0.03f * static_cast<float>(p), c = 0.2f * static_cast<float>(s + 1);
      b.insert(b.end(), {0.1f, 0.2f, 0.1f});
      a.insert(a.end(), {1.f, -2.f * r * std::cos(c), r * r});
    }
  }
  std::vector<int64_t> row_start{0, 2, 3}, order{0, 1, 2}, bad{0};
  std::vector<double> state(channels * tiles * 2 * N);
  std::vector<int> flag(channels * tiles, 0), ticket(1, 0);

  CascadeParams<float> p{};
  p.x = x.data();
  p.x_row_stride = time;
  p.n_rows = rows;
  p.row_start = row_start.data();
  p.channel_order = order.data();
  p.b = b.data();
  p.a = a.data();
  p.zi = zi.data();
  p.y = y.data();
  p.zf = zf.data();
  p.tile_state = state.data();
  p.tile_flag = flag.data();
  p.ticket = ticket.data();
  p.bad_channel = bad.data();
  p.n_channels = channels;
  p.n_time = time;
  p.n_tiles = tiles;
  p.splits = 2;
  if (filterbank::launch_cascade(p, K, S, nullptr) != cudaSuccess) return 2;

  // The forward against a plain loop (direct form, section by section).
  double worst = 0;
  for (int64_t ch = 0; ch < channels; ++ch) {
    std::vector<double> signal(x.begin() + (ch < 2 ? 0 : 1) * time, x.begin() + (ch < 2 ? 1 : 2) * time);
    for (int s = 0; s < S; ++s) {
      const float* bs = &b[(ch * S + s) * 3];
      const float* as = &a[(ch * S + s) * 3];
      std::vector<double> out(time);
      for (int64_t t = 0; t < time; ++t) {
        double v = bs[0] * signal[t];
        if (t >= 1) v += bs[1] * signal[t - 1] - as[1] * out[t - 1];
        if (t >= 2) v += bs[2] * signal[t - 2] - as[2] * out[t - 2];
        out[t] = v;
      }
      signal = out;
    }
    double scale = 0;
    for (int64_t t = 0; t < time; ++t) scale = std::fmax(scale, std::fabs(signal[t]));
    for (int64_t t = 0; t < time; ++t) worst = std::fmax(worst, std::fabs(y[ch * time + t] - signal[t]) / scale);
  }
  if (!(worst < 1e-4)) {
    std::printf("forward error %.3e\n", worst);
    return 3;
  }

  std::vector<float> grad_y(channels * time, 1.f), grad_zf(channels * S * K, 0.5f);
  std::vector<float> grad_x(2 * rows * time), grad_zi(channels * S * K);
  std::vector<double> sums(channels * tiles * S * (2 * K + 1));
  std::vector<double> adjoint_state(channels * tiles * 2 * K * S);
  std::vector<int> forward_flag(channels * tiles, 0), adjoint_flag(channels * tiles, 0), tickets(2, 0);
  p.y = nullptr;
  p.zf = nullptr;
  p.tile_flag = forward_flag.data();
  p.ticket = &tickets[0];
  if (filterbank::launch_cascade(p, K, S, nullptr) != cudaSuccess) return 4;
  AdjointParams<float> q{};
  q.forward = p;
  q.grad_y = grad_y.data();
  q.grad_zf = grad_zf.data();
  q.grad_x = grad_x.data();
  q.grad_zi = grad_zi.data();
  q.sums = sums.data();
  q.tile_state = adjoint_state.data();
  q.tile_flag = adjoint_flag.data();
  q.ticket = &tickets[1];
  if (filterbank::launch_adjoint(q, K, S, nullptr) != cudaSuccess) return 5;
  for (float g : grad_x) {
    if (!std::isfinite(g)) return 6;
  }
  std::printf("race driver ran: forward error %.2e\n", worst);
  return 0;
}
