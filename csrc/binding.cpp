// Python binding of the kernels (iir_scan.cu): checks the kernels' own
// invariants, allocates the look-back workspaces and launches on the current
// stream. The public checks with their user-facing messages live in
// filterbank/_checks.py. The same file builds the CUDA extension and, with
// FILTERBANK_EMULATE, the CPU-thread one (tensors on the CPU), which also
// reports the global-memory traffic it counted.
#include <torch/extension.h>

#ifndef FILTERBANK_EMULATE
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "iir_scan.h"

namespace {

bool on_kernel_device(const at::Tensor& tensor) {
#ifdef FILTERBANK_EMULATE
  return tensor.device().is_cpu();
#else
  return tensor.is_cuda();
#endif
}

void check_tensor(const at::Tensor& tensor, const char* name, const at::Tensor& x, at::IntArrayRef shape,
                  c10::optional<at::ScalarType> dtype = c10::nullopt) {
  TORCH_CHECK(on_kernel_device(tensor), name, " must be on the kernels' device; got ", tensor.device());
  TORCH_CHECK(tensor.device() == x.device(), name, " is on ", tensor.device(), " but x is on ", x.device());
  TORCH_CHECK(tensor.sizes() == shape, name, " must have shape ", shape, "; got ", tensor.sizes());
  TORCH_CHECK(tensor.is_contiguous(), name, " must be contiguous");
  const at::ScalarType expected = dtype.has_value() ? *dtype : x.scalar_type();
  TORCH_CHECK(tensor.scalar_type() == expected, name, " must have dtype ", expected, "; got ",
              tensor.scalar_type());
}

struct Shape {
  int64_t rows, channels, sections, order, time, tiles, splits;
};

Shape check_forward_inputs(const at::Tensor& x, const at::Tensor& row_start, const at::Tensor& channel_order,
                           const at::Tensor& b, const at::Tensor& a, const at::Tensor& zi, int64_t splits) {
  TORCH_CHECK(on_kernel_device(x), "x must be on the kernels' device; got ", x.device());
  TORCH_CHECK(x.dim() == 2, "x must have shape (rows, time); got ", x.sizes());
  TORCH_CHECK(x.size(1) <= 1 || x.stride(1) == 1, "x must be contiguous along time");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "the kernels compute in float32 or float64; got ", x.scalar_type());
  TORCH_CHECK(b.dim() == 3, "b must have shape (channels, sections, order + 1); got ", b.sizes());
  Shape shape{x.size(0), b.size(0), b.size(1), b.size(2) - 1, x.size(1), 0, splits};
  TORCH_CHECK(filterbank::has_kernel(static_cast<int>(shape.order), static_cast<int>(shape.sections)),
              "no kernel for groups of ", shape.sections, " sections of order ", shape.order);
  check_tensor(b, "b", x, {shape.channels, shape.sections, shape.order + 1});
  check_tensor(a, "a", x, {shape.channels, shape.sections, shape.order + 1});
  check_tensor(zi, "zi", x, {shape.channels, shape.sections, shape.order});
  check_tensor(row_start, "row_start", x, {shape.rows + 1}, at::kLong);
  check_tensor(channel_order, "channel_order", x, {shape.channels}, at::kLong);
  TORCH_CHECK(splits >= 1, "splits must be >= 1; got ", splits);
  const int64_t tile = x.scalar_type() == at::kFloat ? filterbank::tile_length<float>()
                                                     : filterbank::tile_length<double>();
  shape.tiles = (shape.time + tile - 1) / tile;
  return shape;
}

// Look-back workspace: states (P, tiles, 2, state) float64, flags (P, tiles)
// and the block ticket, both zeroed. The forward's state is K * (S + 1)
// (the input history too), the adjoint's K * S.
struct Workspace {
  Workspace(const at::Tensor& x, const Shape& shape, int64_t state)
      : tile_state(at::empty({shape.channels, shape.tiles, 2, state}, x.options().dtype(at::kDouble))),
        tile_flag(at::zeros({shape.channels, shape.tiles}, x.options().dtype(at::kInt))),
        ticket(at::zeros({1}, x.options().dtype(at::kInt))) {}
  at::Tensor tile_state, tile_flag, ticket;
};

template <typename scalar_t>
filterbank::CascadeParams<scalar_t> cascade_params(const at::Tensor& x, const at::Tensor& row_start,
                                                   const at::Tensor& channel_order, const at::Tensor& b,
                                                   const at::Tensor& a, const at::Tensor& zi, const Shape& shape,
                                                   Workspace& workspace, const at::Tensor& bad_channel) {
  filterbank::CascadeParams<scalar_t> p{};
  p.x = x.data_ptr<scalar_t>();
  p.x_row_stride = x.stride(0);
  p.n_rows = shape.rows;
  p.row_start = row_start.data_ptr<int64_t>();
  p.channel_order = channel_order.data_ptr<int64_t>();
  p.b = b.data_ptr<scalar_t>();
  p.a = a.data_ptr<scalar_t>();
  p.zi = zi.data_ptr<scalar_t>();
  p.tile_state = workspace.tile_state.data_ptr<double>();
  p.tile_flag = workspace.tile_flag.data_ptr<int>();
  p.ticket = workspace.ticket.data_ptr<int>();
  p.bad_channel = bad_channel.data_ptr<int64_t>();
  p.n_channels = shape.channels;
  p.n_time = shape.time;
  p.n_tiles = shape.tiles;
  p.splits = shape.splits;
  return p;
}


void check_launch(cudaError_t error, const char* what) {
  TORCH_CHECK(error == cudaSuccess, "filterbank ", what, ": ", cudaGetErrorString(error));
}

#ifdef FILTERBANK_EMULATE
struct DeviceScope {
  explicit DeviceScope(const at::Tensor&) {}
  cudaStream_t stream() const { return nullptr; }
};
#else
struct DeviceScope {
  explicit DeviceScope(const at::Tensor& x) : guard(x.device()) {}
  cudaStream_t stream() const { return c10::cuda::getCurrentCUDAStream(); }
  c10::cuda::CUDAGuard guard;
};
#endif

// y, zf = the group of sections (b, a) over x: channel p reads row
// x_index[p], given as the rows' channel ranges (row_start, channel_order).
// bad_channel (1,) int64 is set to 1 + a channel with a[.., 0] == 0.
void cascade_forward(const at::Tensor& x, const at::Tensor& row_start, const at::Tensor& channel_order,
                     const at::Tensor& b, const at::Tensor& a, const at::Tensor& zi, const at::Tensor& y,
                     const at::Tensor& zf, int64_t splits, const at::Tensor& bad_channel) {
  const Shape shape = check_forward_inputs(x, row_start, channel_order, b, a, zi, splits);
  check_tensor(bad_channel, "bad_channel", x, {1}, at::kLong);
  check_tensor(y, "y", x, {shape.channels, shape.time});
  check_tensor(zf, "zf", x, {shape.channels, shape.sections, shape.order});
  const DeviceScope scope(x);
  Workspace workspace(x, shape, shape.order * (shape.sections + 1));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cascade_forward", [&] {
    auto p = cascade_params<scalar_t>(x, row_start, channel_order, b, a, zi, shape, workspace, bad_channel);
    p.y = y.data_ptr<scalar_t>();
    p.zf = zf.data_ptr<scalar_t>();
    check_launch(filterbank::launch_cascade(p, static_cast<int>(shape.order), static_cast<int>(shape.sections),
                                            scope.stream()),
                 "cascade_forward");
  });
}

// The group's backward: writes grad_x (splits, rows, time), each slice's
// summed input gradient, and grad_zi (the adjoint at t < K); returns the
// coefficient sums per tile (P, tiles, S, 2K + 1) in float64 for the
// normalised coefficients (see iir_scan.h).
at::Tensor cascade_backward(const at::Tensor& x, const at::Tensor& row_start, const at::Tensor& channel_order,
                            const at::Tensor& b, const at::Tensor& a, const at::Tensor& zi, const at::Tensor& grad_y,
                            const at::Tensor& grad_zf, const at::Tensor& grad_x, const at::Tensor& grad_zi,
                            int64_t splits, const at::Tensor& bad_channel) {
  const Shape shape = check_forward_inputs(x, row_start, channel_order, b, a, zi, splits);
  check_tensor(bad_channel, "bad_channel", x, {1}, at::kLong);
  check_tensor(grad_y, "grad_y", x, {shape.channels, shape.time});
  check_tensor(grad_zf, "grad_zf", x, {shape.channels, shape.sections, shape.order});
  check_tensor(grad_x, "grad_x", x, {splits, shape.rows, shape.time});
  check_tensor(grad_zi, "grad_zi", x, {shape.channels, shape.sections, shape.order});
  const DeviceScope scope(x);
  at::Tensor sums = at::zeros({shape.channels, shape.tiles, shape.sections, 2 * shape.order + 1},
                              x.options().dtype(at::kDouble));
  Workspace forward(x, shape, shape.order * (shape.sections + 1));
  Workspace adjoint(x, shape, shape.order * shape.sections);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cascade_backward", [&] {
    auto p = cascade_params<scalar_t>(x, row_start, channel_order, b, a, zi, shape, forward, bad_channel);
    const int order = static_cast<int>(shape.order), sections = static_cast<int>(shape.sections);
    // First pass: the tiles' end states only (no output stored).
    check_launch(filterbank::launch_cascade(p, order, sections, scope.stream()), "cascade_backward (states)");
    filterbank::AdjointParams<scalar_t> q{};
    q.forward = p;
    q.grad_y = grad_y.data_ptr<scalar_t>();
    q.grad_zf = grad_zf.data_ptr<scalar_t>();
    q.grad_x = grad_x.data_ptr<scalar_t>();
    q.grad_zi = grad_zi.data_ptr<scalar_t>();
    q.sums = sums.data_ptr<double>();
    q.tile_state = adjoint.tile_state.data_ptr<double>();
    q.tile_flag = adjoint.tile_flag.data_ptr<int>();
    q.ticket = adjoint.ticket.data_ptr<int>();
    check_launch(filterbank::launch_adjoint(q, order, sections, scope.stream()), "cascade_backward (adjoint)");
  });
  return sums;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "filterbank's scan kernels (csrc/): a group of IIR sections in one pass, and its fused backward";
  m.def("cascade_forward", &cascade_forward, "a group of IIR sections over every channel, y and zf",
        py::arg("x"), py::arg("row_start"), py::arg("channel_order"), py::arg("b"), py::arg("a"), py::arg("zi"),
        py::arg("y"), py::arg("zf"), py::arg("splits"), py::arg("bad_channel"));
  m.def("cascade_backward", &cascade_backward, "the group's fused backward; returns the coefficient sums",
        py::arg("x"), py::arg("row_start"), py::arg("channel_order"), py::arg("b"), py::arg("a"), py::arg("zi"),
        py::arg("grad_y"), py::arg("grad_zf"), py::arg("grad_x"), py::arg("grad_zi"), py::arg("splits"),
        py::arg("bad_channel"));
  m.attr("tile_float32") = filterbank::tile_length<float>();
  m.attr("tile_float64") = filterbank::tile_length<double>();
  m.def("has_kernel", &filterbank::has_kernel, "whether groups of this order and size have a kernel",
        py::arg("order"), py::arg("sections"));
  m.attr("threads") = filterbank::kThreads;
  m.attr("channels_per_block") = filterbank::kChannelsPerBlock;
#ifdef FILTERBANK_EMULATE
  m.attr("emulated") = true;
  m.def("reset_traffic", &filterbank_emulation::reset_traffic, "zero the counters");
  m.def("traffic", [] {
    return py::make_tuple(filterbank_emulation::total_read.load(), filterbank_emulation::total_written.load(),
                          filterbank_emulation::total_launches.load());
  }, "(global bytes read, global bytes written, launches) since reset_traffic()");
#else
  m.attr("emulated") = false;
#endif
}
