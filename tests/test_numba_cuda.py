"""numba-cuda without a GPU: host logic, every path under the CUDA simulator, PTX for sm_80/sm_90.

* ``plan`` and ``collapse`` (launch geometry, index arithmetic) are plain functions.
* The kernel runs under Numba's CUDA simulator in a process of its own
  (``tests/cudasim_worker.py``), with plans forced so that fused items, split items with
  the ticketed merge, and split items in several waves all run, on every layout and
  dtype, on small cases of the default and adversarial suites; each output is judged by
  the harness against the float64 oracle AND must equal the NumPy model's bit for bit
  (the model is the arithmetic's order, written down); each call is one launch, counted
  by the backend. The same again with four blocks running at once (the queue, tickets and
  waits under real interleavings). Planted bugs show that each check sees its mechanism.
* The kernel compiles to PTX for sm_80 and sm_90 (NVVM), ``ptxas`` assembles it (a spill
  fails), and a float32 kernel holds no float64 arithmetic.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

from backends.cuda.launch import decode, work_items
from backends.cuda.numba_cuda_backend import collapse, plan
from harness.problems import suites

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_NAMES = ("fused", "split", "split-waves")


# -- host logic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "groups, size, expected",
    [
        (64 * 32, 40, "fused"),  # many small groups
        (2 * 32, 40960, "split"),  # SD UNet 2x320x64x64/32: 64 groups, too few for 132 SMs
        (32, 16 * 512 * 512, "split"),  # SD VAE: a few huge groups
        (112 * 8, 8 * 512 * 512, "split"),  # KernelBench: groups too big to keep in L2
    ],
    ids=["many-small", "sd-unet", "sd-vae", "kernelbench"],
)
def test_plan_path(groups, size, expected):
    assert plan(groups, size, 4, sm_count=132, l2_bytes=50 << 20)["path"] == expected


@pytest.mark.parametrize("groups, size", [(1, 1), (1, 5), (3, 10**7), (64, 40960), (896, 2 * 10**6), (7, 129)])
@pytest.mark.parametrize("threads", [32, 256])
def test_plan_covers_every_element_once_in_one_launch(groups, size, threads):
    chosen = plan(groups, size, 4, sm_count=132, l2_bytes=50 << 20, threads=threads)
    chunks, chunk, wave = chosen["chunks"], chosen["chunk"], chosen["wave"]
    assert chosen["launches"] == 1 and 1 <= chosen["grid"] <= chosen["items"]
    assert (chunks - 1) * chunk < size <= chunks * chunk  # no empty chunk, nothing left over
    assert chosen["path"] == ("fused" if chunks == 1 else "split")
    if chunks > 1:
        assert chunk % threads == 0 and 1 <= wave <= groups
        if size * 4 <= 12 << 20:
            assert wave * size * 4 <= 50 << 20 >> 2  # a wave's groups fit in a quarter of the L2
    if chosen["items"] <= 10**5:  # the queue itself, where listing it is cheap
        items = work_items(groups, chunks, wave)
        assert len(items) == chosen["items"]
        assert {(g, k) for kind, g, k in items if kind != "normalize"} == {(g, k) for g in range(groups)
                                                                          for k in range(chunks)}


@pytest.mark.parametrize("groups, chunks, wave", [(1, 1, 1), (5, 1, 5), (7, 3, 2), (64, 9, 64), (10, 4, 3)])
def test_queue_order_decodes_and_puts_statistics_first(groups, chunks, wave):
    items = work_items(groups, chunks, wave)
    assert [decode(i, groups, chunks, wave) for i in range(len(items))] == items
    seen = set()
    for kind, g, k in items:  # every normalize item comes after all statistics items of its group
        if kind == "stats":
            seen.add((g, k))
        elif kind == "normalize":
            assert all((g, j) in seen for j in range(chunks))


def test_plan_keeps_fused_groups_in_l2():
    # 256 groups of 16384 float32 (8x512x32x32/32): the blocks in flight would hold 17 MB... split
    chosen = plan(256 * 4, 16384, 4, sm_count=132, l2_bytes=50 << 20)
    in_flight = 132 * 8
    assert chosen["path"] == "split" or in_flight * 16384 * 4 <= 25 << 20


@pytest.mark.parametrize(
    "shape, strides, expected",
    [
        ((2, 6, 4, 5), (480, 80, 20, 4), ((2, 6, 20), (120, 20, 1))),  # contiguous
        ((2, 6, 4, 5), (480, 4, 120, 24), ((2, 6, 20), (120, 1, 6))),  # channels-last
        ((2, 6, 4, 5), (960, 160, 40, 8), ((2, 6, 20), (240, 40, 2))),  # every other element
        ((2, 6), (24, 4), ((2, 6, 1), (6, 1, 1))),  # rank 2
        ((2, 6, 1, 5), (120, 20, 999, 4), ((2, 6, 5), (30, 5, 1))),  # size-1 dims do not count
        ((2, 6, 4, 5), (960, 160, 40, 4), None),  # rows padded: no single spatial stride
        ((2, 6, 4, 5), (480, 80, 20, -4), None),  # negative stride
        ((2, 6, 4, 5), (480, 80, 20, 6), None),  # not a whole number of elements
    ],
    ids=["contiguous", "channels-last", "strided", "rank2", "unit-dim", "padded", "negative", "misaligned"],
)
def test_collapse(shape, strides, expected):
    assert collapse(shape, strides, 4) == expected


# -- the kernels under the CUDA simulator -------------------------------------------------


def _simulator_selection() -> list[tuple[str, str]]:
    """(case id, config) pairs: every (layout, dtype) of the small default cases on each
    of the three paths; then, rotated over the paths, the smallest remaining case of each
    distribution and of each rank those left out, and the empty inputs; one small case of
    each adversarial distribution, rotated over the paths; and every layout and dtype once
    more with four blocks running at once. Each (path, layout, dtype) and each
    distribution, rank and adversarial input runs once: the simulator runs every thread in
    Python, so a repeat costs seconds and shows nothing new."""
    small = [c for c in suites.get("default")
             if c.numel <= 512 and c.id.endswith("-s0") and c.shape[0] * c.num_groups <= 16]
    pairs, used = [], set()
    for config_index, config in enumerate(CONFIG_NAMES):
        for key in sorted({(c.layout, c.dtype) for c in small}):
            candidates = [c for c in small if (c.layout, c.dtype) == key and c.numel > 0]
            case = candidates[config_index % len(candidates)]
            pairs.append((case.id, config))
            used.add(case.id)
    chosen = [c for c in small if c.id in used]
    rest = sorted((c for c in small if c.id not in used), key=lambda c: (c.numel, c.id))
    extra = []
    for case in rest:
        new_distribution = case.distribution not in {c.distribution for c in chosen + extra}
        new_rank = len(case.shape) not in {len(c.shape) for c in chosen + extra}
        if new_distribution or new_rank or case.numel == 0:
            extra.append(case)
    pairs.extend((case.id, CONFIG_NAMES[i % 3]) for i, case in enumerate(extra))
    seen = set()
    for case in suites.get("adversarial"):
        if case.numel > 9504 or case.distribution in seen or case.dtype == "float64":
            continue
        seen.add(case.distribution)
        pairs.append((case.id, CONFIG_NAMES[len(seen) % 3]))
    # blocks running at once (cudasim_worker.run_blocks_concurrently): every layout and every
    # dtype once, on cases whose groups can be cut (over 32 elements)
    for layout, dtype in CONCURRENT_KEYS:
        splittable = [c for c in small if (c.layout, c.dtype) == (layout, dtype)
                      and c.numel > 32 * c.shape[0] * c.num_groups]
        pairs.append((splittable[0].id, "concurrent"))
    return pairs


CONCURRENT_KEYS = [("contiguous", "float16"), ("channels_last", "bfloat16"), ("strided", "float32"),
                   ("channels_last", "float64")]


SELECTION = _simulator_selection()
EVERY_LAYOUT_AND_DTYPE = {(layout, dtype) for layout in ("contiguous", "channels_last", "strided")
                          for dtype in ("float16", "bfloat16", "float32", "float64")}


def test_selection_covers_every_path_layout_and_dtype():
    from harness.problems.cases import Case

    cases = [(Case.from_id(case_id), config) for case_id, config in SELECTION]
    for config in CONFIG_NAMES:
        covered = {(c.layout, c.dtype) for c, name in cases if name == config and c.numel > 0}
        assert covered == EVERY_LAYOUT_AND_DTYPE, config
    concurrent = [c for c, name in cases if name == "concurrent"]
    assert {c.layout for c in concurrent} == {layout for layout, _ in EVERY_LAYOUT_AND_DTYPE}
    assert {c.dtype for c in concurrent} == {dtype for _, dtype in EVERY_LAYOUT_AND_DTYPE}
    assert {len(c.shape) for c, _ in cases} >= {2, 3, 4, 5}
    assert any(c.numel == 0 for c, _ in cases)


# Planted bugs (``numba_kernels.PLANTS``), each run where its check must see it: the
# same backend instance runs the two cases of a pair, so a reset that is missing shows in
# the second; the reversed partial order changes only bits, so only the comparison with
# the model can see it.
PLANTED = [
    ("2x16x9-g4-float32-channels_last-normal-s0", "split", "partials-reversed"),
    ("2x16x9-g4-float32-contiguous-normal-s0", "split", "no-queue-reset"),
    ("2x16x9-g4-float32-contiguous-normal-s1", "split", "no-queue-reset"),
    ("2x16x9-g4-float32-contiguous-normal-s0", "split-waves", "no-ticket-reset"),
    ("2x16x9-g4-float32-contiguous-normal-s1", "split-waves", "no-ticket-reset"),
    ("2x16x9-g4-float16-contiguous-normal-s0", "fused", "tail-dropped"),
    # normalize not waiting for its group's statistics: one block at a time never shows it,
    # blocks at once do
    ("2x16x9-g4-float32-contiguous-normal-s0", "split", "no-wait"),
    ("2x16x9-g4-float32-contiguous-normal-s0", "concurrent", "no-wait"),
]


@pytest.fixture(scope="module")
def simulated():
    """{(case id, config, plant): row} from three simulator processes (two halves of the
    selection, and the planted bugs)."""
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed: pip install 'groupnorm-bench[numba]'")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    specs = [f"{case_id}:{config}" for case_id, config in SELECTION]
    planted = [f"{case_id}:{config}:{plant}" for case_id, config, plant in PLANTED]
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "cudasim_worker.py"), *part],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for part in (specs[0::2], specs[1::2], planted)]
    results = {}
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        for line in out.splitlines():
            row = json.loads(line)
            results[(row["id"], row["config"], row["plant"])] = row
    return results


@pytest.mark.parametrize("case_id, config", SELECTION, ids=[f"{c}@{p}" for c, p in SELECTION])
def test_simulated_case_passes(simulated, case_id, config):
    row = simulated[(case_id, config, None)]
    assert row["status"] == "passed", \
        f"{case_id} on the {config} path: {row['status']} {row['reason']} (ratio {row['ratio']})"
    if row["model_identical"] is not None:  # the kernel's arithmetic in the model's order, bit for bit
        assert row["model_identical"], f"{case_id} on the {config} path differs from the NumPy model"


@pytest.mark.parametrize("plant", sorted({p for _, _, p in PLANTED}))
def test_planted_bug_is_seen(simulated, plant):
    rows = [simulated[key] for key in simulated if key[2] == plant]
    last = rows[-1]  # a missing reset shows in the call after
    if plant == "partials-reversed":  # within tolerance: only the bitwise comparison with the model sees it
        assert last["status"] == "passed" and last["model_identical"] is False, last
    elif plant == "no-wait":  # invisible when blocks run one at a time; blocks at once read stale statistics
        sequential, concurrent = rows
        assert sequential["config"] == "split" and sequential["status"] == "passed", sequential
        assert concurrent["config"] == "concurrent" and concurrent["status"] != "passed", concurrent
    else:
        assert last["status"] != "passed", last


def test_simulator_ran_every_path(simulated):
    from harness.problems.cases import Case

    simulated = {(case_id, config): row for (case_id, config, plant), row in simulated.items() if plant is None}
    ran = {row["path"] for row in simulated.values() if Case.from_id(row["id"]).numel > 0}
    assert ran == {"fused", "split", "split-waves"}
    for (case_id, config), row in simulated.items():
        case = Case.from_id(case_id)
        if case.numel > 0:  # a group of at most 32 elements (one block's threads) cannot be cut: fused
            expected = (
                "fused"
                if case.numel // (case.shape[0] * case.num_groups) <= 32
                else "split-waves"
                if config == "concurrent"
                else config
            )
            assert row["path"] == expected, f"{case_id}: configured for {config}, planned {row['path']}"
    for config in ("split", "split-waves"):  # groups cut into several blocks, partials merged
        assert max(row["chunks"] for (_, name), row in simulated.items() if name == config) > 1, config
    for (case_id, config), row in simulated.items():  # counted by the backend's launcher: one kernel a call
        assert row["launches"] == (1 if Case.from_id(case_id).numel else 0), (case_id, config, row["launches"])


# -- PTX for sm_80 and sm_90 -----------------------------------------------------------------


def _signatures(kind, param_kind):
    from numba.core import types

    kernel_type = {
        "float16": types.float16,
        "bfloat16": types.uint16,
        "float32": types.float32,
        "float64": types.float64,
    }
    acc = types.float64 if kind == "float64" else types.float32
    flat = types.Array(kernel_type[kind], 1, "C")
    param = types.Array(kernel_type[param_kind], 1, "A")
    work = types.Array(acc, 1, "C")
    i, flag = types.int64, types.boolean
    return {
        "forward": (
            flat,
            param,
            param,
            flat,
            types.Array(types.uint64, 1, "C"),
            types.Array(types.int32, 1, "C"),
            work,
            work,
            i,
            i,
            i,
            i,
            flag,
            i,
            i,
            i,
            i,
            i,
            i,
            i,
            i,
            i,
            i,
            acc,
        ),
    }


KERNEL_KINDS = [
    (kind, param)
    for kind in ("float16", "bfloat16", "float32", "float64")
    for param in ((kind, "float32") if kind in ("float16", "bfloat16") else (kind,))
]


_PTX: dict = {}


def _ptx(kind, param_kind, cc) -> dict:
    """{kernel: PTX text} for one instantiation, compiled once per session (skips the
    calling test when this machine has no NVRTC/NVVM)."""
    if (kind, param_kind, cc) in _PTX:
        return _PTX[kind, param_kind, cc]
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed: pip install 'groupnorm-bench[numba]'")
    code = (
        "import json, sys\n"
        "from numba import cuda\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from backends.cuda import numba_kernels as K\n"
        "from tests.test_numba_cuda import _signatures\n"
        "kind, param, cc = sys.argv[2], sys.argv[3], (int(sys.argv[4]), int(sys.argv[5]))\n"
        "kernels = {'forward': K.build(kind, param, 256)}\n"
        "out = {}\n"
        "for name, sig in _signatures(kind, param).items():\n"
        "    out[name] = cuda.compile_ptx(kernels[name].py_func, sig, cc=cc)[0]\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run(
        [sys.executable, "-c", code, ROOT, kind, param_kind, *map(str, cc)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    if proc.returncode and "DynamicLibNotFoundError" in proc.stderr:
        pytest.skip(
            "no NVRTC/NVVM on this machine (pip install nvidia-cuda-nvrtc; NVVM from the CUDA toolkit): "
            + proc.stderr.strip().splitlines()[-1][:200]
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _PTX[kind, param_kind, cc] = json.loads(proc.stdout)
    return _PTX[kind, param_kind, cc]


CCS = pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["sm_80", "sm_90"])
KINDS = pytest.mark.parametrize("kind, param_kind", KERNEL_KINDS, ids=[f"x-{k}-w-{p}" for k, p in KERNEL_KINDS])


@CCS
@KINDS
def test_kernels_compile_to_ptx(kind, param_kind, cc):
    ptx = _ptx(kind, param_kind, cc)
    arch = f"sm_{cc[0]}{cc[1]}"
    assert set(ptx) == {"forward"}
    for name, text in ptx.items():
        assert f".target {arch}" in text, name
        assert ".entry" in text, name


@CCS
@KINDS
def test_kernels_assemble_without_spills(kind, param_kind, cc):
    from backends.cuda.sass import cuda_binary

    ptxas = cuda_binary("ptxas")
    if ptxas is None:
        pytest.skip("no ptxas on this machine (the CUDA toolkit's assembler): PTX is checked, registers are not")
    ptx = _ptx(kind, param_kind, cc)
    arch = f"sm_{cc[0]}{cc[1]}"
    for name, text in ptx.items():
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as handle:
            handle.write(text)
        result = subprocess.run(
            [ptxas, f"-arch={arch}", "-v", handle.name, "-o", os.devnull], capture_output=True, text=True
        )
        os.unlink(handle.name)
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
        registers = re.search(r"Used (\d+) registers", result.stderr)
        spills = [int(v) for v in re.findall(r"(\d+) bytes spill (?:stores|loads)", result.stderr)]
        print(
            f"{name} {kind}/{param_kind} {arch}: {registers.group(1) if registers else '?'} registers, spills {spills}"
        )
        assert not any(spills), f"{name} spills registers on {arch}: {result.stderr}"


@CCS
@pytest.mark.parametrize(
    "kind, param_kind",
    [k for k in KERNEL_KINDS if k[0] != "float64"],
    ids=[f"x-{k}-w-{p}" for k, p in KERNEL_KINDS if k != "float64"],
)
def test_statistics_stay_in_float32_for_half_and_float32_inputs(kind, param_kind, cc):
    """No float64 arithmetic in the PTX of a float32-accumulating kernel (the first design
    promoted count, mean and M2 to float64 through ``count += 1``)."""
    ptx = _ptx(kind, param_kind, cc)["forward"]
    wide = sorted(set(re.findall(r"\b(?:add|sub|mul|div|fma|sqrt|rcp)\.[a-z.]*f64\b", ptx)))
    assert not wide, f"float64 arithmetic in the {kind} kernel: {wide}"


def test_simulator_rows_are_marked_and_never_timed(tmp_path):
    """Rows from Numba's CUDA simulator say device="cuda" like a GPU's: the ``simulated``
    column tells them apart, bench does not time them and report leaves them out."""
    from harness.records import results

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", COLUMNS="200")
    case = "2x8x4x4-g4-float32-contiguous-normal-s0"
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "bench",
            "--backends",
            "numba-cuda,numpy",
            "--devices",
            "cuda,cpu",
            "--case",
            case,
            "--budget",
            "0.05",
            "--out",
            str(tmp_path / "bench"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "not timed: numba-cuda:cuda ran on a device emulated on the host" in " ".join(ran.stdout.split())
    frame = results.load(tmp_path / "bench").set_index("backend")
    assert frame.loc["numba-cuda", "simulated"] and not frame.loc["numpy", "simulated"]
    assert frame.loc["numba-cuda", "status"] == "passed" and frame.loc["numba-cuda", "device"] == "cuda"
    assert frame.loc["numba-cuda", "median_s"] != frame.loc["numba-cuda", "median_s"]  # NaN: not timed
    assert frame.loc["numpy", "median_s"] > 0
    report = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(tmp_path / "bench"), "--out", str(tmp_path / "report")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "1 bench rows of a device emulated on the host" in summary and "numba-cuda:cuda" not in summary


def test_a_cpu_tensor_gets_a_clear_error_not_a_stream_lookup():
    torch = pytest.importorskip("torch")
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed: pip install 'groupnorm-bench[numba]'")
    from backends.cuda.numba_cuda_backend import NumbaCudaBackend
    from backends.errors import InvalidTypeError

    with pytest.raises(InvalidTypeError, match="must be a CUDA array.*got Tensor"):
        NumbaCudaBackend().group_norm(torch.ones(2, 4, 3), 2)
