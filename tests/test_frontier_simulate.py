"""Simulated cost of frontier points (``kinsim.frontier.simulate``): a task's GPU-seconds, energy and price per
problem are its run's, the default deployment is the smallest tensor parallelism that holds a problem,
simulations are cached and run on workers with the same numbers, and unfinished requests are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinsim.errors import SpecError
from kinsim.frontier import simulate as frontier
from kinsim.frontier.simulate import SimTask, simulate_costs
from kinsim.hardware.load import load_hardware
from kinsim.ops.op import OP_CLASSES
from kinsim.runner import simulate

from .conftest import HARDWARE

H100 = HARDWARE / "h100.yaml"
DENSE = {"policy": "dense"}
TINY = "Qwen3-0.6B"


def tiny_task(samples: int = 1, output: int = 40, problems: int = 1) -> SimTask:
    """``problems`` prompts of 64 + p tokens, each with ``samples`` outputs of ``output`` + s tokens."""
    return SimTask(TINY, DENSE, tuple(64 + p for p in range(problems)),
                   tuple(tuple(output + s for s in range(samples)) for _ in range(problems)))


def write_workload(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def busy_seconds(run) -> float:
    """A run's replica-seconds of steps from its step table: the steps' end minus start summed (the requests'
    gpu_s divide these). Each step's duration on the engine's clock is its priced time (the op classes'
    seconds) rounded to whole nanoseconds, so the two agree within half a nanosecond a step."""
    steps = run.steps
    priced = float(steps[[f"{c}_s" for c in OP_CLASSES]].to_numpy().sum())
    busy = float((steps["end_s"] - steps["start_s"]).sum())
    assert abs(busy - priced) <= 0.5e-9 * int(steps["steps"].sum())
    return busy


def test_one_problem_one_sample_costs_its_run_busy_time_energy_and_price(tmp_path: Path):
    """The same request written as a workload by hand, run by ``kinsim.simulate``, gives the cost: busy seconds
    (its steps' durations on the clock summed) x 1 GPU, its energy, and its price from the makespan."""
    hw = load_hardware(H100, {"gpu.price": "3.6 $/h"})  # 3.6 $/h = 0.001 $/s
    (cost,) = simulate_costs([SimTask(TINY, DENSE, (100,), ((50,),))], hw)
    workload = write_workload(tmp_path / "one.yaml", f"""name: one
model: {TINY}
requests: {{kind: best_of_n, problems: 1, samples: 1, prompt_tokens: 100, output_tokens: 50, max_output_tokens: 50}}
""")
    run = simulate(workload, hw)
    busy = busy_seconds(run)
    assert run["requests.completed"] == 1 and run["tokens.generated"] == 50
    assert cost.deployment == "tp1"
    assert cost.gpu_s == pytest.approx(busy * 1, rel=1e-12)
    # H100: 70 W idle for the makespan, plus 700 - 70 = 630 W while busy (steps on the clock), on its one GPU
    makespan = run["sim_time_s"]
    assert cost.joules == pytest.approx(70 * makespan + 630 * busy, rel=1e-12)
    assert cost.usd == pytest.approx(0.001 * 1 * makespan, rel=1e-12)
    # the shipped H100 file has no price: no dollars
    (unpriced,) = simulate_costs([SimTask(TINY, DENSE, (100,), ((50,),))], H100)
    assert unpriced.usd is None and unpriced.gpu_s == pytest.approx(cost.gpu_s, rel=1e-12)


def test_costs_are_per_problem_and_a_template_keeps_its_deployment(tmp_path: Path):
    """Two identical problems on one replica of 2 GPUs: gpu_s is busy seconds x 2 GPUs / 2 problems, as the
    hand-written workload's run gives."""
    template = write_workload(tmp_path / "template.yaml", "deployment: {tensor_parallel: 2, max_num_seqs: 8}\n")
    task = SimTask(TINY, DENSE, (80, 80), ((30, 20), (30, 20)))
    (cost,) = simulate_costs([task], H100, workload=template)
    workload = write_workload(tmp_path / "two.yaml", f"""name: two
model: {TINY}
deployment: {{tensor_parallel: 2, max_num_seqs: 8}}
requests:
  kind: best_of_n
  problems: 2
  samples: 2
  prompt_tokens: 80
  output_tokens: {{dist: list, values: [30, 20]}}
  max_output_tokens: 30
""")
    run = simulate(workload, H100)
    busy = busy_seconds(run)
    assert cost.deployment == "tp2"
    assert cost.gpu_s == pytest.approx(busy * 2 / 2, rel=1e-12)
    assert cost.joules == pytest.approx(run["energy_j"] / 2, rel=1e-12)


def test_a_rerun_on_the_same_store_simulates_nothing_and_identical_tasks_run_once(tmp_path: Path, monkeypatch):
    tasks = [tiny_task(1), tiny_task(2), tiny_task(1)]  # the third is the first again
    store = tmp_path / "frontier.sqlite"
    calls: list[tuple[int, int]] = []
    first = simulate_costs(tasks, H100, store=store, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]  # two distinct workloads, each simulated once
    assert first[0] == first[2] and first[0] != first[1]

    def refuse(*args):
        raise AssertionError("simulated again")

    monkeypatch.setattr(frontier, "simulate_point", refuse)
    calls.clear()
    again = simulate_costs(tasks, H100, store=store, progress=lambda done, total: calls.append((done, total)))
    assert calls == [] and again == first  # from the results file, to the bit


def test_two_workers_give_the_numbers_of_one(tmp_path: Path):
    tasks = [tiny_task(n, output=30 + 10 * n, problems=2) for n in (1, 2, 4)]
    one = simulate_costs(tasks, H100, workers=1)
    two = simulate_costs(tasks, H100, workers=2, store=tmp_path / "two.sqlite")
    assert one == two
    assert one[0].gpu_s < one[1].gpu_s < one[2].gpu_s  # more samples, more work per problem


def test_default_tensor_parallel_is_the_smallest_that_holds_a_problem():
    """Qwen3-32B on H100 (80 GiB, 99% visible, x vLLM's 0.9: 76.54 GB budgeted per GPU): 65.52 GB of bf16
    weights, 1.17 GB of activations (the forward pass of 8,192 tokens: 8,192 x (2 x 5,120 + 80 x 128 + 2 x
    25,600) x 2 B) and 0.27 GB outside PyTorch leave 9.57 GB at tensor_parallel 1, at 64 layers x 8 KV heads x
    128 x 2 (K, V) x 2 B = 262,144 B per token: 2,281 blocks of 16, 36,496 tokens (kinsim.engine.memory_budget).
    One sample of 64 + 20,000 tokens fits there; a problem of two such samples (40,064 tokens) does not, and
    gets tensor_parallel 2."""
    one, two = (SimTask("Qwen3-32B", DENSE, (64,), ((20000,) * n,)) for n in (1, 2))
    assert simulate_costs([one], H100)[0].deployment == "tp1"
    assert simulate_costs([two], H100)[0].deployment == "tp2"
    # one model's tasks share one deployment: the larger problem decides
    assert [c.deployment for c in simulate_costs([one, two], H100)] == ["tp2", "tp2"]


def test_a_model_too_big_for_one_gpu_gets_the_smallest_tensor_parallel_that_holds_a_problem():
    """Llama-3.1-70B on H100: 141.1 GB of bf16 weights do not fit 76.54 GB at tensor_parallel 1. At 2, 70.55 GB
    of weights, 0.82 GB of activations and 2.25 GB outside PyTorch (0.25 GiB, and 1.85 GiB of collective buffers)
    leave 2.91 GB per GPU, at 80 layers x 4 KV heads x 128 x 2 x 2 B = 163,840 B per token: 1,108 blocks of 16
    (watermark ceil(1% x 1,108) = 12 blocks). A problem of one sample of 64 + 20 tokens fits there; one of two
    samples of 9,000 tokens needs 4 shared prompt blocks + 2 x ceil(9,000 / 16) = 1,130 blocks, more than
    1,108 - 12: tensor_parallel 4, and gpu_s counts 4 GPUs."""
    small, large = (SimTask("Llama-3.1-70B", DENSE, (64,), (outputs,)) for outputs in ((20,), (9000, 9000)))
    assert simulate_costs([small], H100)[0].deployment == "tp2"
    (cost,) = simulate_costs([large], H100)
    assert cost.deployment == "tp4"
    run = simulate(frontier.task_workloads([large], load_hardware(H100), None)[0], H100)
    assert run["gpus"] == 4 and run["requests.completed"] == 2
    assert cost.gpu_s == pytest.approx(4 * busy_seconds(run), rel=1e-12)


def test_an_unfinished_request_is_an_error_naming_the_model_attention_and_n(tmp_path: Path):
    """A 2.6 GB GPU (2.574 GB visible, 2.317 GB budgeted at 0.9) holds Qwen3-0.6B's 1.19 GB of weights, 0.62
    GB of activations (the sampler's 256 x 151,936 logits x 16 B) and 0.27 GB outside PyTorch, leaving 0.23
    GB: 127 blocks of 16 tokens at 28 x 8 x 128 x 2 x 2 = 114,688 B each, 2,032 tokens. A sample that reaches
    4,096 tokens of sliding window cannot finish there. Without a template, a problem of 64 samples of 5,000
    tokens needs 320,000 tokens, more than any tensor parallelism of one node holds (from 2 GPUs each also
    keeps 1.85 GiB of collective buffers, more than the GPU has)."""
    small = load_hardware(H100, {"gpu.memory.capacity": "2.6 GB"})
    template = write_workload(tmp_path / "t.yaml", "deployment: {tensor_parallel: 1}\n")
    task = SimTask(TINY, {"policy": "sliding_window", "window": 4096}, (64,), ((5000,),))
    with pytest.raises(SpecError) as caught:
        simulate_costs([task], small, workload=template)
    message = str(caught.value)
    assert "Qwen3-0.6B" in message and "sliding_window" in message and "window 4096" in message
    assert "N=1" in message and "1 of 1 requests did not finish" in message
    # without a template the default finds no tensor parallelism on one node that holds the problem
    with pytest.raises(SpecError, match="does not fit one node of h100"):
        simulate_costs([SimTask(TINY, DENSE, (64,), ((5000,) * 64,))], small)


@pytest.mark.parametrize("task, words", [
    (SimTask(TINY, DENSE, (64, 64), ((10,), (10, 11))), "the same number"),
    (SimTask(TINY, DENSE, (64,), ((10,), (10,))), "one list of outputs per problem"),
    (SimTask(TINY, {"policy": "block_topk", "top_k": 0}, (64,), ((10,),)), "attention.top_k"),
    (SimTask("Qwen3-9B", DENSE, (64,), ((10,),)), "unknown model preset"),
])
def test_bad_tasks_are_one_spec_error_naming_the_task(task: SimTask, words: str):
    with pytest.raises(SpecError) as caught:
        simulate_costs([task], H100)
    assert words in str(caught.value) and str(caught.value).count("\n") == 0


def test_a_template_key_that_is_not_a_workload_key_is_refused(tmp_path: Path):
    template = write_workload(tmp_path / "t.yaml", "deploymnet: {tensor_parallel: 2}\n")
    with pytest.raises(SpecError, match="deploymnet: not a key of a workload file"):
        simulate_costs([tiny_task()], H100, workload=template)


def test_each_request_generates_its_samples_tokens_and_arrivals_are_at_zero_unless_the_template_says(
        tmp_path: Path):
    from kinsim.workload import AllAtOnce, PoissonArrivals, workload_requests

    task = tiny_task(samples=2, output=40, problems=3)  # prompts 64, 65, 66; outputs 40 and 41 each
    (spec,) = frontier.task_workloads([task], load_hardware(H100), None)
    requests = workload_requests(spec)
    assert [(r.group_id, r.prompt_tokens, r.output_tokens, r.arrival_s) for r in requests] == [
        ("p0", 64, 40, 0.0), ("p0", 64, 41, 0.0), ("p1", 65, 40, 0.0), ("p1", 65, 41, 0.0),
        ("p2", 66, 40, 0.0), ("p2", 66, 41, 0.0)]
    assert isinstance(spec.requests.arrival, AllAtOnce)
    template = write_workload(tmp_path / "t.yaml", "requests: {arrival: {process: poisson, rate: 2 /s}}\nseed: 3\n")
    (spec,) = frontier.task_workloads([task], load_hardware(H100), frontier.read_template(template))
    assert spec.requests.arrival == PoissonArrivals(rate=2.0) and spec.seed == 3
    arrivals = [r.arrival_s for r in workload_requests(spec)]
    assert arrivals[0] == arrivals[1] > 0 and arrivals[2] == arrivals[3] > arrivals[1]  # a problem's samples together
    assert [r.output_tokens for r in workload_requests(spec)] == [40, 41] * 3


def test_a_dask_cluster_gives_the_numbers_of_local_workers():
    distributed = pytest.importorskip("distributed", reason="needs the distributed extra")
    tasks = [tiny_task(n, output=30, problems=2) for n in (1, 2)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster:
        remote = simulate_costs(tasks, H100, dask=cluster.scheduler_address)
    assert remote == simulate_costs(tasks, H100)


def test_a_model_yaml_file_is_a_models_keys(tmp_path: Path):
    """A model file holds what ``model:`` takes: here the 0.6B preset with an fp8 KV cache, whose KV per
    token is half the bf16 one's (28 x 8 x 128 x 2 x 1 B = 57,344 B)."""
    model = write_workload(tmp_path / "small.yaml", f"preset: {TINY}\nkv_dtype: fp8\n")
    (spec,) = frontier.task_workloads([SimTask(str(model), DENSE, (64,), ((10,),))], load_hardware(H100), None)
    assert spec.model.name == TINY and spec.model.kv_bytes_per_token == 57344


def test_weights_take_each_problems_own_gpu_seconds():
    """Weighted problems: gpu_s is the weighted sum of the problems' GPU-seconds (their requests' gpu_s summed,
    from the same workload run by hand); joules are the run's energy times that share of its GPU-seconds."""
    task = SimTask(TINY, DENSE, (80, 40), ((30, 20), (10, 10)), weights=(0.25, 0.75))
    (cost,) = simulate_costs([task], H100)
    run = simulate(frontier.task_workloads([task], load_hardware(H100), None)[0], H100)
    per_problem = run.requests.groupby("group_id", sort=False)["gpu_s"].sum().to_numpy()
    assert len(per_problem) == 2 and per_problem.sum() == pytest.approx(busy_seconds(run), rel=1e-9)
    expected = 0.25 * per_problem[0] + 0.75 * per_problem[1]
    assert cost.gpu_s == pytest.approx(expected, rel=1e-12)
    assert cost.joules == pytest.approx(run["energy_j"] * expected / per_problem.sum(), rel=1e-12)


def test_a_template_whose_requests_is_not_a_mapping_is_refused(tmp_path: Path):
    template = write_workload(tmp_path / "t.yaml", "requests: [1]\n")
    with pytest.raises(SpecError, match=r"t.yaml: requests: expected a mapping"):
        simulate_costs([SimTask(TINY, DENSE, (10,), ((5,),))], H100, workload=template)
