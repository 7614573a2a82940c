"""A GPU defined from scratch in Python: a hypothetical part with H100 compute and 192 GB of HBM at
8 TB/s, in the same 8-GPU NVSwitch node, serving aime_bon32. Every figure is validated as if it came from
a hardware file. Its kernels are priced with the H100's calibration profile, transferred: the profile's
terms are stated relative to the hardware, so they apply to the new bandwidth as they are
(docs/calibration.md). Run: python examples/custom_gpu.py
"""

from __future__ import annotations

from pathlib import Path

import kinsim

ROOT = Path(__file__).resolve().parents[1]


def custom_gpu(capacity: str = "192 GB", bandwidth: str = "8 TB/s") -> kinsim.HardwareSpec:
    return kinsim.hardware_from_dict({
        "name": "custom-hbm-gpu",
        "gpu": {
            "name": "Hypothetical GPU",
            "source": "A what-if: H100 SXM5 compute (NVIDIA datasheet) with more and faster HBM.",
            "compute": {"units": 132, "clock": "1830 MHz",
                        "peak": {"bf16": "989 TFLOP/s", "fp8": "1979 TFLOP/s", "fp32": "67 TFLOP/s"}},
            "memory": {"technology": "HBM3e", "capacity": capacity, "bandwidth": bandwidth, "channels": 8},
            "l2_cache": "50 MB",
            "launch_overhead": "1 us",
            "power": {"tdp": "1000 W", "idle": "100 W"},
        },
        "node": {
            "gpus": 8, "source": "As a DGX H100 node.",
            "gpu_link": {"kind": "nvlink", "topology": "switch", "bandwidth": "450 GB/s", "latency": "2 us",
                         "in_switch_reduction": True},
            "host_link": {"kind": "pcie", "generation": 5, "bandwidth": "63 GB/s", "latency": "2 us"},
            "host_memory": "2 TB",
        },
        "calibration": {"from": str(ROOT / "hardware" / "calibration" / "h100.yaml")},
    })


def main() -> dict[str, float]:
    workload = ROOT / "workloads" / "aime_bon32.yaml"
    h100 = kinsim.simulate(workload, ROOT / "hardware" / "h100.yaml")
    custom = kinsim.simulate(workload, custom_gpu())
    print(f"aime_bon32: H100 {h100['throughput.tasks_per_s']:.4f} tasks/s ({h100['requests.preemptions']:,} "
          f"preemptions); custom GPU {custom['throughput.tasks_per_s']:.4f} tasks/s "
          f"({custom['requests.preemptions']:,} preemptions)")
    return {"h100": h100["throughput.tasks_per_s"], "custom": custom["throughput.tasks_per_s"],
            "custom_preemptions": custom["requests.preemptions"]}


if __name__ == "__main__":
    main()
