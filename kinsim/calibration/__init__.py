"""Calibration: fitted efficiency curves per kernel kind, the profile file that carries them, the fitter
and the validator. Nothing here imports the engine, SimPy, torch or Triton."""
