"""kinsim: a discrete-event simulator of LLM inference on GPU hardware.

The library API::

    import kinsim
    hw = kinsim.load_hardware("hardware/h100.yaml")
    faster = hw.with_overrides({"gpu.memory.bandwidth": "6.7 TB/s"})
    workload = kinsim.load_workload("workloads/aime_bon32.yaml")
    model = kinsim.load_model("Qwen3-8B")
    result = kinsim.simulate(workload, faster)
    print(result["throughput.tasks_per_s"], result.to_dict()["latency"]["task"]["e2e"]["p99"])

``simulate`` and ``Result`` are imported on first use, so that ``import kinsim`` does not import the
engine (and SimPy): the calibration tools run on machines without it.
"""

__version__ = "0.1.0"

from kinsim.errors import KinsimError, SpecError  # noqa: E402
from kinsim.hardware import HardwareSpec, hardware_from_dict, load_hardware  # noqa: E402
from kinsim.model import ModelSpec, load_model  # noqa: E402
from kinsim.schema import to_raw, with_overrides  # noqa: E402
from kinsim.workload import WorkloadSpec, load_workload, workload_requests  # noqa: E402

__all__ = [
    "HardwareSpec", "KinsimError", "ModelSpec", "Result", "SpecError", "WorkloadSpec", "__version__",
    "hardware_from_dict", "load_hardware", "load_model", "load_workload", "simulate", "to_raw", "with_overrides",
    "workload_requests",
]


def __getattr__(name: str):
    if name == "simulate":
        from kinsim.runner import simulate

        return simulate
    if name == "Result":
        from kinsim.result import Result

        return Result
    raise AttributeError(f"module 'kinsim' has no attribute {name!r}")
