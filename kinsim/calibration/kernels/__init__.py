"""Reference Triton kernels whose measured times calibrate kinsim (``pip install "kinsim[calibrate]"``).

Importing a module here imports torch and Triton; nothing in the engine does. Every kernel takes the data
type of its inputs: bf16 on a GPU; the tests run fp16 and fp32 under ``TRITON_INTERPRET=1`` on the CPU,
where Triton's interpreter does not handle bf16.
"""
