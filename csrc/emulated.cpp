// The kernels of iir_scan.cu and coupled.cu compiled as C++ for CPU threads
// (emulation.h); built with FILTERBANK_EMULATE defined, together with binding.cpp.
#ifndef FILTERBANK_EMULATE
#error "build emulated.cpp with -DFILTERBANK_EMULATE"
#endif
#include "iir_scan.cu"
#include "coupled.cu"
