"""The accuracy-cost frontier (Kinetics, arXiv 2506.05333): scored samples in; per model, attention and
strategy, accuracy against its cost in FLOPs, eFLOPs and simulated GPU-seconds; the Pareto frontier out."""
