"""The accuracy-cost frontier (Kinetics, arXiv 2506.05333): scored samples in, for each model, attention
setting and test-time strategy the accuracy against the cost per task, and the Pareto frontier out.

* :mod:`~kinsim.frontier.samples` reads and validates scored-sample files and attention files;
* :mod:`~kinsim.frontier.accuracy` gives pass@N, majority voting and long chain-of-thought accuracy;
* :mod:`~kinsim.frontier.flops` the FLOPs and Kinetics eFLOPs of a task for its real sample lengths;
* :mod:`~kinsim.frontier.table` one row per (model, attention, strategy, N or budget), and the simulations
  those rows describe;
* :mod:`~kinsim.frontier.simulate` the simulated GPU-seconds, joules and dollars of those workloads (cached
  in the sweep store, on local workers or a Dask cluster);
* :mod:`~kinsim.frontier.pareto` the frontiers, the size threshold and the iso-accuracy cost ratios;
* :mod:`~kinsim.frontier.plot` accuracy against cost;
* :mod:`~kinsim.frontier.importers` turns scored generations written by other tools (the Kinetics paper's
  public generations) into kinsim's scored-sample format.

``kinsim frontier`` (:mod:`kinsim.cli.frontier`) ties them together, ``kinsim samples import`` the
importers; see ``docs/frontier.md``.
"""

from __future__ import annotations

from kinsim.frontier.samples import ScoredSamples, load_samples

__all__ = ["ScoredSamples", "load_samples"]
