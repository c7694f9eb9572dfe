"""Kernels: filter many independent channels, forward and backward, on flat tensors.

``reference`` (pure torch, the ground truth), ``cpu`` (numba) and ``cuda``
(``csrc/``, built on first use) implement the same operations under the
same names and signatures (listed in ``reference``); ``filterbank._ops``
picks one per call. The private modules are the CPU kernels' parts
(``_tiles``, ``_cascade``, ``_frames``, ``_fused``, ``_simd``), their output
buffers (``_memory``), the compute dtype (``_dtypes``), and ``adjoint``, the
backward composed from a forward (docs/design.md, "The backward").
"""
