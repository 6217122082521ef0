"""gnbench report: a markdown summary and three PNG plots from stored results."""

import harness
from conftest import run_harness
from harness.records import results


def test_report_writes_summary_and_plots(tmp_path):
    verified = harness.verify(backends=["numpy", "torch"], suite="smoke")
    timed = harness.bench(backends=["numpy", "torch"], suite="smoke", budget=0.05)
    results.write(verified, str(tmp_path / "runs"), "verify-smoke")
    results.write(timed, str(tmp_path / "runs"), "bench-smoke")
    result = run_harness("report", str(tmp_path / "runs"), "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "| smoke | forward | numpy:cpu | 12 | 0 | 0 | 0 |" in summary  # passed, failed, known bugs, not run
    assert "geo-mean speedup vs torch" in summary and "| smoke | forward | torch:cpu | 12 / 12 | 1.00 |" in summary
    for name in ("gbps.png", "latency.png", "verification.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_missing_results_is_a_clear_error(tmp_path):
    result = run_harness("report", str(tmp_path / "nothing-here"))
    assert result.returncode == 2 and "no results file or folder" in result.stdout + result.stderr
