"""The launch model of our CUDA kernels (``python -m harness.launches``), without a GPU:
one launch for every workload-suite shape, and the committed model tables (the README's)
equal to what the tool prints now."""

from __future__ import annotations

import os

import pytest

from harness.commands import launches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def rows():
    return launches.model_table("h100")


def test_every_workload_shape_is_one_launch(rows):
    assert len(rows) >= 40  # every distinct workload shape
    over = [r["case"] for r in rows if r["launches"] != 1 or not 1 <= r["grid"]]
    assert not over, over


def test_each_wave_is_read_once_from_dram_where_its_groups_fit(rows):
    # 2x the tensor (x once, y once) except where one group is over a quarter of the L2
    twice = [r["case"] for r in rows if r["dram_mb"] > 2 * r["tensor_mb"] + 1e-9]
    assert twice == ["1x16x128x128x128/8 float32"], twice  # a 16.8 MB group against a 12.5 MB quarter


@pytest.mark.parametrize("gpu", sorted(launches.GPUS))
def test_committed_model_table_is_current(gpu):
    with open(os.path.join(ROOT, "results", "model", f"cuda-forward-{gpu}.md")) as handle:
        committed = handle.read().rstrip("\n")
    assert committed == launches.markdown(launches.model_table(gpu), gpu), \
        f"rerun: python -m harness.launches --gpu {gpu} > results/model/cuda-forward-{gpu}.md"
