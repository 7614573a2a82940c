"""Hardware descriptions: specs, loading with ``extends`` and overrides, and the link topology."""

from kinsim.hardware.load import hardware_from_dict, load_hardware
from kinsim.hardware.spec import (
    ClusterSpec,
    ComputeSpec,
    EfficiencySpec,
    GPULinkSpec,
    GPUSpec,
    HardwareSpec,
    HostLinkSpec,
    MemorySpec,
    NetworkSpec,
    NodeSpec,
    PowerSpec,
)
from kinsim.hardware.topology import build_topology

__all__ = [
    "ClusterSpec", "ComputeSpec", "EfficiencySpec", "GPULinkSpec", "GPUSpec", "HardwareSpec", "HostLinkSpec",
    "MemorySpec", "NetworkSpec", "NodeSpec", "PowerSpec", "build_topology", "hardware_from_dict", "load_hardware",
]
