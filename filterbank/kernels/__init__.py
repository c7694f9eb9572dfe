"""Kernels: filter many independent channels, forward and backward.

``reference`` (pure torch, the ground truth), ``cpu`` (numba) and, in a later
issue, ``cuda`` share one signature; ``filterbank._ops`` picks one by device.
"""
