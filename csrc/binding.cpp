// Python binding of the kernels (iir_scan.cu, coupled.cu): checks the
// kernels' own invariants, allocates the look-back workspaces and launches on
// the current stream. The public checks with their user-facing messages live in
// filterbank/_checks.py. The same file builds the CUDA extension and, with
// FILTERBANK_EMULATE, the CPU-thread one (tensors on the CPU), which also
// reports the global-memory traffic it counted.
#include <torch/extension.h>

#ifndef FILTERBANK_EMULATE
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "coupled.h"
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

// ---------------------------------------------------------------------------
// Coupled recurrences (coupled.h): h = f(A h[t-1] + u[t]) per row, channels last.

struct CoupledShape {
  int64_t rows, time, channels;
};

// u or h (N, T, C), h0 (N, C), index (N,) and the nonlinearity's number.
CoupledShape check_rows(const at::Tensor& x, const at::Tensor& index, const at::Tensor& h0, int64_t nonlinearity) {
  TORCH_CHECK(on_kernel_device(x), "x must be on the kernels' device; got ", x.device());
  TORCH_CHECK(x.dim() == 3, "x must have shape (rows, time, channels); got ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), "x must be contiguous");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "the kernels compute in float32 or float64; got ", x.scalar_type());
  const CoupledShape shape{x.size(0), x.size(1), x.size(2)};
  check_tensor(h0, "h0", x, {shape.rows, shape.channels});
  check_tensor(index, "index", x, {shape.rows}, at::kLong);
  TORCH_CHECK(nonlinearity >= filterbank::kIdentity && nonlinearity <= filterbank::kRelu,
              "nonlinearity must be 0 (identity), 1 (tanh) or 2 (relu); got ", nonlinearity);
  const int64_t largest = filterbank::max_coupled_channels(static_cast<int>(x.element_size()));
  TORCH_CHECK(shape.channels <= largest, "the coupled kernels take at most ", largest, " channels in ",
              x.scalar_type(), "; got ", shape.channels);
  return shape;
}

void check_band(const at::Tensor& band, const at::Tensor& x, const CoupledShape& shape, int64_t lower) {
  TORCH_CHECK(band.dim() == 3 && band.size(2) == shape.channels,
              "band must have shape (matrices, width, channels); got ", band.sizes());
  check_tensor(band, "band", x, {band.size(0), band.size(1), shape.channels});
  TORCH_CHECK(band.size(0) >= 1 && band.size(1) >= 1, "band must hold a matrix and a diagonal; got ", band.sizes());
  TORCH_CHECK(lower >= 0 && lower < band.size(1), "lower must be in [0, width); got ", lower, " for width ",
              band.size(1));
}

void check_pattern(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values, const at::Tensor& x,
                   const CoupledShape& shape, const char* crow_name, const char* col_name, const char* values_name) {
  check_tensor(crow, crow_name, x, {shape.channels + 1}, at::kLong);
  TORCH_CHECK(col.dim() == 1, col_name, " must have shape (nnz,); got ", col.sizes());
  check_tensor(col, col_name, x, {col.size(0)}, at::kLong);
  TORCH_CHECK(values.dim() == 2 && values.size(0) >= 1, values_name, " must have shape (matrices, nnz); got ",
              values.sizes());
  check_tensor(values, values_name, x, {values.size(0), col.size(0)});
}

template <typename scalar_t>
filterbank::CoupledParams<scalar_t> coupled_params(const at::Tensor& index, const at::Tensor& h0,
                                                   const CoupledShape& shape, int64_t nonlinearity) {
  filterbank::CoupledParams<scalar_t> p{};
  p.h0 = h0.data_ptr<scalar_t>();
  p.index = index.data_ptr<int64_t>();
  p.n_rows = shape.rows;
  p.n_time = shape.time;
  p.n_channels = shape.channels;
  p.nonlinearity = static_cast<int>(nonlinearity);
  return p;
}

void check_backward(const at::Tensor& grad_h, const at::Tensor& h, const at::Tensor& grad_u,
                    const at::Tensor& grad_rows, const at::Tensor& grad_h0, const CoupledShape& shape,
                    int64_t entries) {
  check_tensor(grad_h, "grad_h", h, {shape.rows, shape.time, shape.channels});
  check_tensor(grad_u, "grad_u", h, {shape.rows, shape.time, shape.channels});
  check_tensor(grad_h0, "grad_h0", h, {shape.rows, shape.channels});
  TORCH_CHECK(grad_rows.numel() == shape.rows * entries, "grad_rows must hold ", entries,
              " entries per row; got shape ", grad_rows.sizes());
  TORCH_CHECK(on_kernel_device(grad_rows) && grad_rows.device() == h.device() && grad_rows.is_contiguous() &&
                  grad_rows.scalar_type() == at::kDouble,
              "grad_rows must be a contiguous float64 tensor on the kernels' device");
}

// h = the recurrence over u with the banded matrices band (M, W, C) (diagonal
// d of channel i at band[m, d, i]), row n using band[index[n]].
void banded_forward(const at::Tensor& u, const at::Tensor& band, const at::Tensor& index, const at::Tensor& h0,
                    const at::Tensor& h, int64_t lower, int64_t nonlinearity) {
  const CoupledShape shape = check_rows(u, index, h0, nonlinearity);
  check_band(band, u, shape, lower);
  check_tensor(h, "h", u, {shape.rows, shape.time, shape.channels});
  const DeviceScope scope(u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "banded_forward", [&] {
    auto p = coupled_params<scalar_t>(index, h0, shape, nonlinearity);
    p.u = u.data_ptr<scalar_t>();
    p.h = h.data_ptr<scalar_t>();
    p.band = band.data_ptr<scalar_t>();
    p.width = band.size(1);
    p.lower = lower;
    check_launch(filterbank::launch_banded_forward(p, scope.stream()), "banded_forward");
  });
}

// The backward of banded_forward: grad_u, grad_h0 and each row's sums
// grad_rows (N, W, C) float64 (reduce_rows sums the rows of each matrix).
void banded_backward(const at::Tensor& grad_h, const at::Tensor& h, const at::Tensor& band, const at::Tensor& index,
                     const at::Tensor& h0, int64_t lower, int64_t nonlinearity, const at::Tensor& grad_u,
                     const at::Tensor& grad_rows, const at::Tensor& grad_h0) {
  const CoupledShape shape = check_rows(h, index, h0, nonlinearity);
  check_band(band, h, shape, lower);
  check_backward(grad_h, h, grad_u, grad_rows, grad_h0, shape, band.size(1) * shape.channels);
  const DeviceScope scope(h);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "banded_backward", [&] {
    auto p = coupled_params<scalar_t>(index, h0, shape, nonlinearity);
    p.h = h.data_ptr<scalar_t>();
    p.band = band.data_ptr<scalar_t>();
    p.width = band.size(1);
    p.lower = lower;
    p.grad_h = grad_h.data_ptr<scalar_t>();
    p.grad_u = grad_u.data_ptr<scalar_t>();
    p.grad_h0 = grad_h0.data_ptr<scalar_t>();
    p.grad_rows = grad_rows.data_ptr<double>();
    check_launch(filterbank::launch_banded_backward(p, scope.stream()), "banded_backward");
  });
}

// h = the recurrence with the CSR matrices (crow, col, values[index[n]]).
void csr_forward(const at::Tensor& u, const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                 const at::Tensor& index, const at::Tensor& h0, const at::Tensor& h, int64_t nonlinearity) {
  const CoupledShape shape = check_rows(u, index, h0, nonlinearity);
  check_pattern(crow, col, values, u, shape, "crow", "col", "values");
  check_tensor(h, "h", u, {shape.rows, shape.time, shape.channels});
  const DeviceScope scope(u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "csr_forward", [&] {
    auto p = coupled_params<scalar_t>(index, h0, shape, nonlinearity);
    p.u = u.data_ptr<scalar_t>();
    p.h = h.data_ptr<scalar_t>();
    p.crow = crow.data_ptr<int64_t>();
    p.col = col.data_ptr<int64_t>();
    p.values = values.data_ptr<scalar_t>();
    p.nnz = col.size(0);
    check_launch(filterbank::launch_csr_forward(p, scope.stream()), "csr_forward");
  });
}

// The backward of csr_forward, given A^T's pattern (crow_t, col_t) and values
// values_t in its order: grad_u, grad_h0 and each row's sums grad_rows (N, nnz).
void csr_backward(const at::Tensor& grad_h, const at::Tensor& h, const at::Tensor& crow, const at::Tensor& col,
                  const at::Tensor& values, const at::Tensor& crow_t, const at::Tensor& col_t,
                  const at::Tensor& values_t, const at::Tensor& index, const at::Tensor& h0, int64_t nonlinearity,
                  const at::Tensor& grad_u, const at::Tensor& grad_rows, const at::Tensor& grad_h0) {
  const CoupledShape shape = check_rows(h, index, h0, nonlinearity);
  check_pattern(crow, col, values, h, shape, "crow", "col", "values");
  check_pattern(crow_t, col_t, values_t, h, shape, "crow_t", "col_t", "values_t");
  TORCH_CHECK(values_t.sizes() == values.sizes(), "values_t must have the shape of values ", values.sizes(),
              "; got ", values_t.sizes());
  check_backward(grad_h, h, grad_u, grad_rows, grad_h0, shape, col.size(0));
  const DeviceScope scope(h);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "csr_backward", [&] {
    auto p = coupled_params<scalar_t>(index, h0, shape, nonlinearity);
    p.h = h.data_ptr<scalar_t>();
    p.crow = crow.data_ptr<int64_t>();
    p.col = col.data_ptr<int64_t>();
    p.values = values.data_ptr<scalar_t>();
    p.crow_t = crow_t.data_ptr<int64_t>();
    p.col_t = col_t.data_ptr<int64_t>();
    p.values_t = values_t.data_ptr<scalar_t>();
    p.nnz = col.size(0);
    p.grad_h = grad_h.data_ptr<scalar_t>();
    p.grad_u = grad_u.data_ptr<scalar_t>();
    p.grad_h0 = grad_h0.data_ptr<scalar_t>();
    p.grad_rows = grad_rows.data_ptr<double>();
    check_launch(filterbank::launch_csr_backward(p, scope.stream()), "csr_backward");
  });
}

// out (M, E) = per_row (N, E) summed over each matrix's rows in row order:
// rows (N,) the rows sorted (stably) by matrix, start (M + 1,) where each
// matrix's rows begin in it.
void reduce_rows(const at::Tensor& per_row, const at::Tensor& rows, const at::Tensor& start, const at::Tensor& out) {
  TORCH_CHECK(on_kernel_device(per_row), "per_row must be on the kernels' device; got ", per_row.device());
  TORCH_CHECK(per_row.dim() == 2 && per_row.scalar_type() == at::kDouble && per_row.is_contiguous(),
              "per_row must be a contiguous float64 (rows, entries) tensor; got ", per_row.sizes(), " ",
              per_row.scalar_type());
  check_tensor(rows, "rows", per_row, {per_row.size(0)}, at::kLong);
  TORCH_CHECK(start.dim() == 1 && start.size(0) >= 1, "start must have shape (matrices + 1,); got ", start.sizes());
  check_tensor(start, "start", per_row, {start.size(0)}, at::kLong);
  check_tensor(out, "out", per_row, {start.size(0) - 1, per_row.size(1)});
  const DeviceScope scope(per_row);
  check_launch(filterbank::launch_reduce_rows(per_row.data_ptr<double>(), rows.data_ptr<int64_t>(),
                                              start.data_ptr<int64_t>(), out.data_ptr<double>(), out.size(0),
                                              out.size(1), scope.stream()),
               "reduce_rows");
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "filterbank's kernels (csrc/): a group of IIR sections in one pass and its fused backward; the coupled "
            "recurrences and their backward";
  m.def("cascade_forward", &cascade_forward, "a group of IIR sections over every channel, y and zf",
        py::arg("x"), py::arg("row_start"), py::arg("channel_order"), py::arg("b"), py::arg("a"), py::arg("zi"),
        py::arg("y"), py::arg("zf"), py::arg("splits"), py::arg("bad_channel"));
  m.def("cascade_backward", &cascade_backward, "the group's fused backward; returns the coefficient sums",
        py::arg("x"), py::arg("row_start"), py::arg("channel_order"), py::arg("b"), py::arg("a"), py::arg("zi"),
        py::arg("grad_y"), py::arg("grad_zf"), py::arg("grad_x"), py::arg("grad_zi"), py::arg("splits"),
        py::arg("bad_channel"));
  m.attr("tile_float32") = filterbank::tile_length<float>();
  m.attr("tile_float64") = filterbank::tile_length<double>();
  m.def("banded_forward", &banded_forward, "the banded coupled recurrence over every row, into h", py::arg("u"),
        py::arg("band"), py::arg("index"), py::arg("h0"), py::arg("h"), py::arg("lower"), py::arg("nonlinearity"));
  m.def("banded_backward", &banded_backward, "its backward: grad_u, each row's band sums, grad_h0",
        py::arg("grad_h"), py::arg("h"), py::arg("band"), py::arg("index"), py::arg("h0"), py::arg("lower"),
        py::arg("nonlinearity"), py::arg("grad_u"), py::arg("grad_rows"), py::arg("grad_h0"));
  m.def("csr_forward", &csr_forward, "the CSR coupled recurrence over every row, into h", py::arg("u"),
        py::arg("crow"), py::arg("col"), py::arg("values"), py::arg("index"), py::arg("h0"), py::arg("h"),
        py::arg("nonlinearity"));
  m.def("csr_backward", &csr_backward, "its backward: grad_u, each row's value sums, grad_h0", py::arg("grad_h"),
        py::arg("h"), py::arg("crow"), py::arg("col"), py::arg("values"), py::arg("crow_t"), py::arg("col_t"),
        py::arg("values_t"), py::arg("index"), py::arg("h0"), py::arg("nonlinearity"), py::arg("grad_u"),
        py::arg("grad_rows"), py::arg("grad_h0"));
  m.def("reduce_rows", &reduce_rows, "per-row sums summed over each matrix's rows, in row order",
        py::arg("per_row"), py::arg("rows"), py::arg("start"), py::arg("out"));
  m.def("max_coupled_channels", &filterbank::max_coupled_channels,
        "the most channels the coupled kernels take for a dtype of this many bytes", py::arg("itemsize"));
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
