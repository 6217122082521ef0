"""The results schema: documented, written atomically, read back from many files."""

import json

import pandas as pd
import pytest

import harness
from harness import results


@pytest.fixture(scope="module")
def frame():
    return harness.verify(backends=["numpy"], suite="smoke")


def test_rows_have_exactly_the_documented_columns(frame):
    assert list(frame.columns) == list(results.COLUMNS)
    assert all(results.COLUMNS[c] for c in results.COLUMNS)


def test_every_row_carries_its_environment(frame):
    for column in ("host", "cpu_model", "cpu_count", "python", "commit", "date", "versions"):
        assert frame[column].notna().all() and (frame[column].astype(str) != "").all(), column
    assert "numpy" in json.loads(frame.versions.iloc[0])


def test_write_then_load_many_files_and_folders(frame, tmp_path):
    first = results.write(frame, str(tmp_path / "a"), "verify-smoke")
    results.write(frame.head(3), str(tmp_path / "b"), "verify-part")
    assert [p.endswith(s) for p, s in zip(first, (".parquet", ".csv"))] == [True, True]
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
