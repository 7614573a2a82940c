"""Calibration: measured kernels (kinsim's own Triton kernels, or public silicon tables imported by
:mod:`kinsim.calibration.aiconfigurator`), the fitter of the kernel model's terms per kernel kind, the
validator, and end-to-end serving benchmarks (:mod:`kinsim.calibration.silicon`). Nothing here imports
the engine, SimPy, torch or Triton at import time."""
