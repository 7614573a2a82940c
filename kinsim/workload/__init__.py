"""Workloads: deployment, attention policy and requests (generated or replayed from a trace)."""

from kinsim.workload.generate import generate_requests, workload_requests
from kinsim.workload.load import load_workload
from kinsim.workload.replay import TraceReplay, TraceReport, replay_trace
from kinsim.workload.request import BlockHashes, Request
from kinsim.workload.spec import (
    AllAtOnce,
    BestOfNRequests,
    BlockTopKAttention,
    ClosedLoopArrivals,
    DenseAttention,
    DeploymentSpec,
    LongCoTRequests,
    PoissonArrivals,
    SlidingWindowAttention,
    TopKAttention,
    TraceRequests,
    WorkloadSpec,
)
from kinsim.workload.trace import read_trace

__all__ = [
    "AllAtOnce", "BestOfNRequests", "BlockHashes", "BlockTopKAttention", "ClosedLoopArrivals", "DenseAttention",
    "DeploymentSpec", "LongCoTRequests", "PoissonArrivals", "Request", "SlidingWindowAttention",
    "TopKAttention", "TraceReplay", "TraceReport", "TraceRequests", "WorkloadSpec", "generate_requests",
    "load_workload", "read_trace", "replay_trace", "workload_requests",
]
