// Python binding of the CUDA kernels (iir_scan.cu): checks the arguments,
// guards the device and launches on the current stream. The public checks
// with their user-facing messages live in filterbank/functional.py; these
// guard the kernels' own invariants.
#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "iir_scan.h"

namespace {

void check_cuda(const at::Tensor& tensor, const char* name, const at::Tensor& like) {
  TORCH_CHECK(tensor.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(tensor.device() == like.device(), name, " is on ", tensor.device(), " but x is on ", like.device());
}

void check_matrix(const at::Tensor& tensor, const char* name, int64_t rows, int64_t cols, const at::Tensor& like) {
  check_cuda(tensor, name, like);
  TORCH_CHECK(tensor.dim() == 2 && tensor.size(0) == rows && tensor.size(1) == cols, name, " must have shape (",
              rows, ", ", cols, "); got ", tensor.sizes());
  TORCH_CHECK(tensor.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(tensor.scalar_type() == like.scalar_type(), name, " must have x's dtype ", like.scalar_type(),
              "; got ", tensor.scalar_type());
}

void check_signal(const at::Tensor& x, const at::Tensor& x_index, int64_t n_channels) {
  TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor");
  TORCH_CHECK(x.dim() == 2, "x must have shape (rows, time); got ", x.sizes());
  TORCH_CHECK(x.size(1) <= 1 || x.stride(1) == 1, "x must be contiguous along time");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "the CUDA kernels compute in float32 or float64; got ", x.scalar_type());
  check_cuda(x_index, "x_index", x);
  TORCH_CHECK(x_index.dim() == 1 && x_index.size(0) == n_channels && x_index.is_contiguous() &&
                  x_index.scalar_type() == at::kLong,
              "x_index must be a contiguous int64 vector of ", n_channels, " rows");
}

int order_of(const at::Tensor& b) {
  const int64_t order = b.size(1) - 1;
  TORCH_CHECK(order >= 1 && order <= filterbank::kMaxOrder, "the CUDA kernels take orders 1..",
              filterbank::kMaxOrder, "; got ", order);
  return static_cast<int>(order);
}

// y = the section (b, a) over x[x_index] (a normalised: a[:, 0] == 1), with
// the initial state zi as scipy's TDF-II state; reverse runs time backwards.
void section_scan(const at::Tensor& x, const at::Tensor& x_index, const at::Tensor& b, const at::Tensor& a,
                  const c10::optional<at::Tensor>& zi, const at::Tensor& y, bool reverse) {
  const int64_t n_channels = b.size(0);
  check_signal(x, x_index, n_channels);
  const int order = order_of(b);
  check_matrix(b, "b", n_channels, order + 1, x);
  check_matrix(a, "a", n_channels, order + 1, x);
  check_matrix(y, "y", n_channels, x.size(1), x);
  if (zi.has_value()) check_matrix(*zi, "zi", n_channels, order, x);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n_time = x.size(1);
  const int64_t n_tiles = (n_time + filterbank::kTile - 1) / filterbank::kTile;
  const int n_levels = filterbank::scan_levels(n_time);
  at::Tensor powers = at::empty({n_channels, n_levels, order, order}, x.options());
  at::Tensor tile_states = at::empty({n_channels, n_tiles, order}, x.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "section_scan", [&] {
    filterbank::SectionParams<scalar_t> params;
    params.x = x.data_ptr<scalar_t>();
    params.x_row_stride = x.stride(0);
    params.x_index = x_index.data_ptr<int64_t>();
    params.b = b.data_ptr<scalar_t>();
    params.a = a.data_ptr<scalar_t>();
    params.zi = zi.has_value() ? zi->data_ptr<scalar_t>() : nullptr;
    params.y = y.data_ptr<scalar_t>();
    params.powers = powers.data_ptr<scalar_t>();
    params.tile_states = tile_states.data_ptr<scalar_t>();
    params.n_channels = n_channels;
    params.n_time = n_time;
    params.n_tiles = n_tiles;
    params.n_levels = n_levels;
    params.reverse = reverse;
    const cudaError_t error = filterbank::launch_section(params, order, stream);
    TORCH_CHECK(error == cudaSuccess, "filterbank section_scan: ", cudaGetErrorString(error));
  });
}

// The backward's sums for one section (see iir_scan.h); sums is (P, 2K + 1)
// float64 and is added to.
void correlate(const at::Tensor& u, const at::Tensor& x, const at::Tensor& x_index, const at::Tensor& y,
               const at::Tensor& b, const c10::optional<at::Tensor>& grad_in, const at::Tensor& sums) {
  const int64_t n_channels = b.size(0);
  check_signal(x, x_index, n_channels);
  const int order = order_of(b);
  check_matrix(b, "b", n_channels, order + 1, x);
  check_matrix(u, "u", n_channels, x.size(1), x);
  check_matrix(y, "y", n_channels, x.size(1), x);
  if (grad_in.has_value()) check_matrix(*grad_in, "grad_in", n_channels, x.size(1), x);
  check_cuda(sums, "sums", x);
  TORCH_CHECK(sums.scalar_type() == at::kDouble && sums.is_contiguous() && sums.dim() == 2 &&
                  sums.size(0) == n_channels && sums.size(1) == 2 * order + 1,
              "sums must be contiguous float64 of shape (", n_channels, ", ", 2 * order + 1, ")");
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "correlate", [&] {
    filterbank::CorrelateParams<scalar_t> params;
    params.u = u.data_ptr<scalar_t>();
    params.x = x.data_ptr<scalar_t>();
    params.x_row_stride = x.stride(0);
    params.x_index = x_index.data_ptr<int64_t>();
    params.y = y.data_ptr<scalar_t>();
    params.b = b.data_ptr<scalar_t>();
    params.grad_in = grad_in.has_value() ? grad_in->data_ptr<scalar_t>() : nullptr;
    params.sums = sums.data_ptr<double>();
    params.n_channels = n_channels;
    params.n_time = x.size(1);
    const cudaError_t error = filterbank::launch_correlate(params, order, stream);
    TORCH_CHECK(error == cudaSuccess, "filterbank correlate: ", cudaGetErrorString(error));
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "filterbank's CUDA kernels (csrc/): a chunked scan per IIR section and the backward's reductions";
  m.def("section_scan", &section_scan, "one IIR section per channel by a time-parallel scan", py::arg("x"),
        py::arg("x_index"), py::arg("b"), py::arg("a"), py::arg("zi"), py::arg("y"), py::arg("reverse"));
  m.def("correlate", &correlate, "the backward's coefficient sums and input gradient of one section", py::arg("u"),
        py::arg("x"), py::arg("x_index"), py::arg("y"), py::arg("b"), py::arg("grad_in"), py::arg("sums"));
}
