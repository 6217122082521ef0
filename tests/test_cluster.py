"""Verification on a Ray cluster (harness.cluster), on a real multi-raylet Ray cluster on
this machine (``ray.cluster_utils.Cluster``): nodes stand for two GPU types through Ray's
``accelerator_type:<T>`` resources; CPU backends do the work. One node has another pandas
version installed (a fake distribution first on its PYTHONPATH) and must be refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import backends
from harness.commands.verify import verify
from harness.execution.cluster import ClusterSweep, fingerprint, mismatch
from harness.problems.plan import plan
from harness.records import results

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
# columns that may differ between a cluster's rows and a local run's: where and when
# Ray starts its raylets with subprocess (fork, then exec at once), which JAX, imported by
# earlier tests in this process, warns about; nothing runs between the fork and the exec
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
WHERE_AND_WHEN = {"seconds", "date", "run_id", "node", "machine_type", "attempt", "retry_reason", "host", "os",
                  "cpu_count", "cpu_affinity", "memory_gb"}

def _fake_distribution(folder: str, package: str, version: str) -> None:
    info = os.path.join(folder, f"{package}-{version}.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as handle:
        handle.write(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head (no CPUs, so no work) + two H100 nodes + an A100 node + an A100 node with
    another pandas: 1 CPU each, tests/ on the nodes' PYTHONPATH for cluster_plugin."""
    pytest.importorskip(
        "ray", reason="the cluster extra (Ray) is not installed: pip install 'groupnorm-bench[cluster]'"
    )
    from ray.cluster_utils import Cluster

    marker_dir = str(tmp_path_factory.mktemp("markers"))
    fake = str(tmp_path_factory.mktemp("fake-site"))
    _fake_distribution(fake, "pandas", "0.0.1")
    path = os.pathsep.join([TESTS, ROOT])
    env = {"PYTHONPATH": path, "GNBENCH_CLUSTER_TEST_DIR": marker_dir}
    head = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "env_vars": env,
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 500,
                "health_check_failure_threshold": 4,
            },
        },
    )
    nodes = {
        "H100-a": head.add_node(num_cpus=1, resources={"accelerator_type:H100": 1}, env_vars=env),
        "H100-b": head.add_node(num_cpus=1, resources={"accelerator_type:H100": 1}, env_vars=env),
        "A100": head.add_node(num_cpus=1, resources={"accelerator_type:A100": 1}, env_vars=env),
        "A100-other-pandas": head.add_node(
            num_cpus=1,
            resources={"accelerator_type:A100": 1},
            env_vars={**env, "PYTHONPATH": os.pathsep.join([fake, path])},
        ),
    }
    head.wait_for_nodes()
    head.nodes_by_name = nodes
    head.marker_dir = marker_dir
    head.environment = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT, os.environ.get("PYTHONPATH", "")])}
    yield head
    import ray

    if ray.is_initialized():
        ray.shutdown()
    head.shutdown()


def _ids(node_name, cluster):
    return cluster.nodes_by_name[node_name].node_id


def _local_rows(the_plan):
    return verify(cases=the_plan.cases, backends=[n for n, _ in the_plan.pairs], devices=["cpu"])


def _comparable(frame):
    keep = [c for c in frame.columns if c not in WHERE_AND_WHEN]
    return frame[keep].sort_values(["case_id", "backend"]).reset_index(drop=True)


def test_each_machine_type_runs_every_case_once_with_a_local_runs_rows(cluster):
    backends.load_plugins(["harness.selftest"])  # planted bugs: failing rows must match a local run's too
    the_plan = plan(backends=["numpy", "bug-unbiased-variance"], suite="smoke", devices=["cpu"])
    sweep = ClusterSweep(the_plan, cluster=cluster.address, accelerators="H100,A100", plugins=["harness.selftest"])
    frame = sweep.start().frame()
    assert not frame.empty
    # every case exactly once per machine type
    counts = frame.groupby(["machine_type", "case_id", "backend"]).size()
    assert set(counts) == {1}
    assert len(frame) == 2 * len(the_plan.cases) * 2
    # the node with another pandas was refused, with the reason, and made no row
    refused = {node.id: node.reason for node in sweep.refused}
    other = _ids("A100-other-pandas", cluster)
    assert other in refused and "pandas 0.0.1 on the node" in refused[other]
    assert other not in set(frame.node)
    assert set(frame[frame.machine_type == "A100"].node) == {_ids("A100", cluster)}
    assert set(frame[frame.machine_type == "H100"].node) <= {_ids("H100-a", cluster), _ids("H100-b", cluster)}
    # the rows equal a local run's, but for where and when
    local = _local_rows(the_plan)
    assert (frame.status != "passed").sum() == 2 * (local.status != "passed").sum() > 0
    for machine_type, rows in frame.groupby("machine_type"):
        mine, theirs = _comparable(rows[local.columns]), _comparable(local)
        assert mine.equals(theirs), (machine_type, [c for c in mine.columns if not mine[c].equals(theirs[c])])


def test_a_killed_ray_worker_is_retried_once_elsewhere_and_recorded(cluster):
    marker = os.path.join(cluster.marker_dir, "killed-once")
    if os.path.exists(marker):
        os.remove(marker)
    backends.load_plugins(["cluster_plugin"])
    the_plan = plan(backends=["kill-once"], suite="smoke", devices=["cpu"])
    sweep = ClusterSweep(the_plan, cluster=cluster.address, accelerators=["H100"], plugins=["cluster_plugin"], batch=6)
    frame = sweep.start().frame()
    assert os.path.exists(marker), "the backend never killed its worker: the test proved nothing"
    assert sorted(frame.case_id) == sorted(c.id for c in the_plan.cases)  # every case once, none lost
    assert set(frame.status) == {"passed"}
    retried = frame[frame.attempt == 2]
    assert len(retried) >= 1 and len(sweep.retries) == 1
    assert retried.retry_reason.str.contains("Worker|worker").all()
    first_node = sweep.retries[0][0]
    assert len(set(retried.node)) == 1
    # elsewhere: the retry ran on the other H100 node than the one named in the retry
    other = [_ids(n, cluster) for n in ("H100-a", "H100-b") if _ids(n, cluster)[:8] not in first_node]
    assert set(retried.node) == set(other)


def test_a_backend_that_segfaults_is_a_crash_row_as_in_a_local_run(cluster):
    backends.load_plugins(["cluster_plugin"])
    the_plan = plan(backends=["segfault"], cases=[c.id for c in plan(suite="smoke").cases[:3]], devices=["cpu"])
    frame = (
        ClusterSweep(the_plan, cluster=cluster.address, accelerators=["H100"], plugins=["cluster_plugin"])
        .start()
        .frame()
    )
    local = _local_rows(the_plan)
    assert set(frame.status) == {"crash"} and len(frame) == 3 and set(frame.attempt) == {1}
    assert _comparable(frame[local.columns]).equals(_comparable(local))


def test_select_counts_only_rows_of_its_own_machine_type():
    """Rows a cluster made on an H100 node of this very host are not evidence for this
    machine (no GPU): same host name, other machine type."""
    from harness.commands import selection

    local = verify(backends=["numpy"], suite="smoke", devices=["cpu"])
    elsewhere = local.assign(machine_type="H100")
    versions = {"numpy": local.backend_version.iloc[0]}
    assert len(selection._matching(local, versions)) == len(local)
    assert selection._matching(elsewhere, versions).empty


def test_a_node_lost_mid_task_is_retried_on_another_node(cluster):
    import ray

    backends.load_plugins(["cluster_plugin"])
    env = {"PYTHONPATH": os.pathsep.join([TESTS, ROOT]), "GNBENCH_CLUSTER_TEST_DIR": cluster.marker_dir}
    added = [cluster.add_node(num_cpus=1, resources={"accelerator_type:L4": 1}, env_vars=env) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        the_plan = plan(backends=["slow-numpy"], suite="smoke", devices=["cpu"])
        sweep = ClusterSweep(
            the_plan, cluster=cluster.address, accelerators=["L4"], plugins=["cluster_plugin"], batch=6
        ).start()
        rows, removed = [], None
        for row in sweep.rows():
            rows.append(row)
            if removed is None:
                removed = next(node for node in added if node.node_id == row["node"])
                cluster.remove_node(removed, allow_graceful=False)
        assert sorted(r["case_id"] for r in rows) == sorted(c.id for c in the_plan.cases)
        retried = [r for r in rows if r["attempt"] == 2]
        assert retried, "no task was retried: the node was not lost mid-task"
        assert {r["node"] for r in retried} == {n.node_id for n in added if n is not removed}
        assert all(r["status"] == "passed" for r in rows)
    finally:
        for node in added:
            if node is not removed:
                cluster.remove_node(node)
        if ray.is_initialized():
            ray.shutdown()


def _log_rows(out):
    path = os.path.join(out, ".verify-smoke.rows.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.endswith("\n")]


def test_resume_after_the_driver_is_killed_keeps_every_finished_row(cluster, tmp_path):
    out = str(tmp_path / "run")
    command = [
        sys.executable,
        "-m",
        "harness",
        "verify",
        "--cluster",
        cluster.address,
        "--accelerators",
        "H100,A100",
        "--plugin",
        "cluster_plugin",
        "--backends",
        "slow-numpy",
        "--suite",
        "smoke",
        "--out",
        out,
    ]
    driver = subprocess.Popen(
        command,
        cwd=ROOT,
        env=cluster.environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while len(_log_rows(out)) < 3 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = _log_rows(out)
    assert 3 <= len(before) < 24, f"{len(before)} rows before the kill: the driver was not killed mid-sweep"
    resumed = subprocess.run(
        command + ["--resume"], cwd=ROOT, env=cluster.environment, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    frame = results.load(os.path.join(out, "verify-smoke.parquet"))
    assert len(frame) == 24 and set(frame.groupby(["machine_type", "case_id"]).size()) == {1}
    kept = {(r["case_id"], r["machine_type"]): r["run_id"] for r in before}
    again = frame.set_index(["case_id", "machine_type"]).run_id
    assert all(again[key] == run_id for key, run_id in kept.items())  # finished rows were not redone
    assert len(set(frame.run_id)) == 2
    # one summary table per machine type, and the refused node with its reason
    assert "H100: verification summary" in resumed.stdout and "A100: verification summary" in resumed.stdout
    assert "node refused" in resumed.stdout and "pandas 0.0.1 on the node" in resumed.stdout
    from harness.commands.report import report

    summary = open(report([out], str(tmp_path / "report"))[0]).read()
    assert "### H100" in summary and "### A100" in summary


def test_a_node_holds_its_object_store_back_from_the_memory_fit(cluster):
    from harness.execution import memory
    from harness.problems.cases import Case

    case = Case((1, 64, 256, 256), 8, "float32", "contiguous")
    need = memory.case_host_bytes(case) + memory.backend_host_bytes(case, "cpu")
    store = 96 * 2**20
    env = {"PYTHONPATH": os.pathsep.join([TESTS, ROOT]), "GNBENCH_HOST_MEMORY": str(need + store // 2)}
    node = cluster.add_node(num_cpus=1, resources={"accelerator_type:MEM": 1}, env_vars=env, object_store_memory=store)
    cluster.wait_for_nodes()
    try:
        frame = verify(backends=["numpy"], cases=[case], cluster=cluster.address, accelerators=["MEM"])
        # without the store held back it would fit (need < need + store/2); with it, it cannot
        assert list(frame.status) == ["skipped"]
        assert "held for Ray's object store" in frame.reason.iloc[0]
    finally:
        cluster.remove_node(node)


def test_a_node_that_changed_since_the_probe_refuses_its_task_at_run_time(cluster):
    """The driver's sources change after the probe (as when a checkout is edited mid-sweep):
    each A100 node refuses the task it gets; no node made a row, and as numpy was named and
    no node can take it, its rows are skipped, with every node's reason."""
    the_plan = plan(backends=["numpy"], suite="smoke", devices=["cpu"])
    sweep = ClusterSweep(the_plan, cluster=cluster.address, accelerators=["A100"]).start()
    kernel = next(path for path in sweep.driver_fingerprint["files"] if path.endswith(".cu"))
    sweep.driver_fingerprint["files"][kernel] = "0" * 16
    frame = sweep.frame()
    assert len(frame) == len(the_plan.cases) and set(frame.status) == {"skipped"}
    assert set(frame.node) == {_ids("A100", cluster)}  # where the task last went, and was refused
    reason = frame.reason.iloc[0]
    assert reason.startswith("no node of type A100") and kernel in reason and "pandas 0.0.1" in reason
    good = sweep.nodes[_ids("A100", cluster)]
    assert kernel in good.reason  # refused at run time, not by the probe


def test_a_backend_registered_at_run_time_is_refused_with_how_to_fix_it():
    backend = backends.GroupNormBackend.from_function("script-local", lambda x, g, w=None, b=None, eps=1e-5: x)
    backends.register(backend, replace=True)
    try:
        with pytest.raises(backends.InvalidArgumentError, match="registered at run time.*--plugin MODULE"):
            ClusterSweep(plan(backends=["script-local"], suite="smoke"), cluster="local")
    finally:
        backends.unregister("script-local")


def test_resume_skips_what_is_done_per_machine_type_or_anywhere_without_types():
    the_plan = plan(backends=["numpy"], suite="smoke", devices=["cpu"])
    first, second = (c.id for c in the_plan.cases[:2])
    done = {(first, "numpy", "cpu", "H100"), (second, "numpy", "cpu", "")}
    per_type = ClusterSweep(the_plan, accelerators="H100,A100", skip=done)._todo()
    todo = {machine_type: ids for _, machine_type, ids in per_type}
    assert first not in todo["H100"] and second in todo["H100"] and first in todo["A100"]
    ((_, _, anywhere),) = ClusterSweep(the_plan, skip=done)._todo()
    assert first not in anywhere and second not in anywhere and len(anywhere) == len(the_plan.cases) - 2


def test_a_node_whose_kernel_differs_is_refused_naming_the_kernel():
    driver = fingerprint()
    kernel = next(path for path in driver["files"] if path.endswith(".cu"))
    node = {**driver, "files": {**driver["files"], kernel: "0" * 16}}
    reason = mismatch(driver, node)
    assert reason is not None and "1 of them kernels" in reason and kernel in reason
    assert mismatch(driver, dict(driver)) is None
    newer = {**driver, "versions": {**driver["versions"], "numpy": "0.1"}}
    assert "numpy 0.1 on the node" in mismatch(driver, newer)


def test_bench_on_a_cluster_is_refused_with_the_reason(capsys):
    from harness.cli import EXIT_USAGE, main

    assert main(["bench", "--cluster", "local", "--backends", "numpy"]) == EXIT_USAGE
    assert "timing needs nodes nobody else uses" in capsys.readouterr().out
    assert main(["verify", "--accelerators", "H100", "--backends", "numpy"]) == EXIT_USAGE


def test_a_local_sweep_imports_no_ray():
    code = (
        "import sys, harness; harness.verify(backends='numpy', suite='smoke', devices='cpu'); "
        "assert 'ray' not in sys.modules, 'a local sweep imported Ray'; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_the_docs_ray_block_runs_as_a_file(tmp_path):
    """The cluster page's Python block (tests/test_docs.py runs every other block): here,
    beside the other tests that start a local Ray, never at the same time as them."""
    pytest.importorskip("ray", reason="the cluster extra installs Ray")
    from test_docs import RAY_BLOCKS, run_python_block

    for name in RAY_BLOCKS:
        run_python_block(name, tmp_path)
