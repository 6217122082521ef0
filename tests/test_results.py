"""The results schema: documented, written atomically, read back from many files."""

import json

import pandas as pd
import pytest

import harness
from harness.records import results


@pytest.fixture(scope="module")
def frame():
    return harness.verify(backends=["numpy"], suite="smoke")


def test_rows_have_exactly_the_documented_columns(frame):
    assert list(frame.columns) == list(results.COLUMNS)
    assert all(results.COLUMNS[c] for c in results.COLUMNS)


def test_every_row_carries_its_environment(frame):
    for column in ("host", "cpu_model", "cpu_signature", "cpu_count", "python", "commit", "date", "versions"):
        assert frame[column].notna().all() and (frame[column].astype(str) != "").all(), column
    assert "numpy" in json.loads(frame.versions.iloc[0])


def test_write_then_load_many_files_and_folders(frame, tmp_path):
    first = results.write(frame, str(tmp_path / "a"), "verify-smoke", csv=True)
    only = results.write(frame.head(3), str(tmp_path / "b"), "verify-part")
    assert [p.endswith(s) for p, s in zip(first, (".parquet", ".csv"))] == [True, True]
    assert len(only) == 1 and only[0].endswith(".parquet")  # parquet is the stored form; CSV on request
    both = results.load(tmp_path / "a", tmp_path / "b")  # folders: parquet preferred over CSV
    assert len(both) == len(frame) + 3
    from_csv = results.load(tmp_path / "a" / "verify-smoke.csv")
    pd.testing.assert_series_equal(from_csv.ratio, frame.ratio, check_names=False)
    assert from_csv.case_id.tolist() == frame.case_id.tolist()
    assert not list(tmp_path.glob("**/.verify*"))  # no temporary files left behind


def test_newer_schema_and_foreign_files_are_refused(frame, tmp_path):
    newer = frame.assign(schema_version=results.SCHEMA_VERSION + 1)
    newer.to_csv(tmp_path / "newer.csv", index=False)
    with pytest.raises(results.SchemaError, match="schema version"):
        results.load(tmp_path / "newer.csv")
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "foreign.csv", index=False)
    with pytest.raises(results.SchemaError, match="not a groupnorm-bench results file"):
        results.load(tmp_path / "foreign.csv")
    with pytest.raises(FileNotFoundError):
        results.load(tmp_path / "missing.parquet")


def test_older_files_gain_missing_columns(frame, tmp_path):
    frame.drop(columns=["verified_groups"]).to_csv(tmp_path / "old.csv", index=False)
    assert results.load(tmp_path / "old.csv").verified_groups.isna().all()


def test_load_takes_a_list_as_well_as_several_arguments(tmp_path):
    frame = harness.verify(backends=["numpy"], suite="smoke", isolate=False)
    paths = [results.write(frame.iloc[:5], str(tmp_path), "a")[0], results.write(frame.iloc[5:], str(tmp_path), "b")[0]]
    assert len(results.load(paths)) == len(results.load(*paths)) == len(frame)


def test_older_files_have_an_empty_cpu_signature(frame, tmp_path):
    """Rows of schema 5 and before name no CPU signature: read back as "" (which
    ``select`` never takes for this machine's)."""
    frame.drop(columns=["cpu_signature"]).assign(schema_version=5).to_csv(tmp_path / "five.csv", index=False)
    assert (results.load(tmp_path / "five.csv").cpu_signature == "").all()


CPUINFO_ZEN1 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 2
flags\t\t: fpu sse sse2 sse4_1 sse4_2 fma f16c avx avx2 bmi2

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
flags\t\t: avx512f
"""


@pytest.mark.parametrize("caches, expected", [
    ({"index0": ("1", "Data", "32K"), "index1": ("1", "Instruction", "64K"), "index2": ("2", "Unified", "512K"),
      "index3": ("3", "Unified", "8192K")},
     "AuthenticAMD 23/1/2 avx2 fma f16c sse4_2 L1d 32K L2 512K L3 8192K"),
    ({}, "AuthenticAMD 23/1/2 avx2 fma f16c sse4_2"),
], ids=["with-sysfs-caches", "no-caches"])
def test_cpu_signature_reads_the_first_cpu_and_its_caches(tmp_path, caches, expected):
    """The signature: vendor, family/model/stepping and the vector extensions of the
    first CPU's block (a later block's flags do not leak in), the data and unified
    caches by level; two "AMD EPYC"s with other caches or extensions differ."""
    from harness.records.environment import _cpu_signature

    (tmp_path / "cpuinfo").write_text(CPUINFO_ZEN1)
    for index, (level, kind, size) in caches.items():
        folder = tmp_path / "cache" / index
        folder.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(value + "\n")
    assert _cpu_signature(str(tmp_path / "cpuinfo"), str(tmp_path / "cache")) == expected
    assert _cpu_signature(str(tmp_path / "missing"), str(tmp_path / "cache"))  # elsewhere: the platform's strings


def test_a_folder_of_old_csv_files_loads_in_the_current_schema():
    """CSV is no longer written by runs, but old folders hold it: a folder with only CSV
    files of schema 1 and 2 (tests/data) loads, every current column present, the columns
    those schemas lacked empty."""
    import os

    from conftest import ROOT

    rows = results.load(os.path.join(ROOT, "tests", "data"))
    assert set(rows.schema_version) == {1, 2}
    assert set(results.COLUMNS) <= set(rows.columns)
    assert (rows.cpu_signature.fillna("") == "").all() and len(rows) == 45
    assert {"passed", "mismatch", "unsupported"} <= set(rows.status)
