"""The registry: names, lookup, register, entry points, refusals."""

import os
import subprocess
import sys
import textwrap

import pytest

import backends
from backends import GroupNormBackend, RegistryError
from conftest import ROOT, plain_group_norm


class Mine(GroupNormBackend):
    name = "test-mine"
    devices = ("cpu",)
    dtypes = ("float32", "float64")

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        return plain_group_norm(x, num_groups, weight, bias, eps)

    def from_numpy(self, array, device):
        return array.copy()

    def to_numpy(self, array):
        return array


@pytest.fixture
def registered():
    backend = backends.register(Mine())
    yield backend
    backends.unregister(backend.name)


def test_builtins_are_listed_first():
    assert backends.names()[:3] == ["torch", "jax", "numpy"]


def test_register_get_and_names(registered):
    assert "test-mine" in backends.names()
    assert backends.get("test-mine") is registered


def test_registering_a_class_instantiates_it():
    backend = backends.register(Mine)
    try:
        assert isinstance(backend, Mine)
    finally:
        backends.unregister("test-mine")


def test_duplicate_name_is_refused(registered):
    with pytest.raises(RegistryError, match="already registered.*replace=True"):
        backends.register(Mine())
    assert backends.register(Mine(), replace=True).name == "test-mine"


def test_builtin_name_is_refused():
    class Impostor(Mine):
        name = "torch"

    with pytest.raises(RegistryError, match="built-in"):
        backends.register(Impostor())


@pytest.mark.parametrize("attribute, value, message", [
    ("name", "Has Space", "lowercase"),
    ("name", "torch:cuda", "no ':'"),
    ("devices", ("tpu",), "devices"),
    ("devices", (), "devices"),
    ("dtypes", ("float8",), "dtypes"),
    ("layouts", "contiguous", "layouts"),
], ids=["name-space", "name-colon", "devices-unknown", "devices-empty", "dtypes-unknown", "layouts-string"])
def test_non_conforming_backend_is_refused(attribute, value, message):
    backend = Mine()
    setattr(backend, attribute, value)
    with pytest.raises(RegistryError, match=message):
        backends.register(backend)


def test_non_backend_object_is_refused():
    with pytest.raises(RegistryError, match="instance of backends.GroupNormBackend"):
        backends.register(lambda x: x)


def test_missing_methods_are_refused_at_instantiation():
    class Incomplete(GroupNormBackend):
        name = "incomplete"

        def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
            return x

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(RegistryError, match="unknown backend 'nope'.*torch, jax, numpy"):
        backends.get("nope")


def test_from_function_backend_is_verified_like_any_other():
    import harness

    backends.register(GroupNormBackend.from_function("test-fn", plain_group_norm))
    try:
        frame = harness.verify(backends=["test-fn"], suite="smoke")
        assert set(frame.status) == {"passed"}, frame[frame.status != "passed"][["case_id", "reason"]]
    finally:
        backends.unregister("test-fn")


def test_entry_point_backends_load_and_broken_ones_become_reasons(tmp_path):
    (tmp_path / "gn_plugin_for_tests.py").write_text(textwrap.dedent("""
        import numpy as np
        from backends import GroupNormBackend

        class Plugged(GroupNormBackend):
            name = "plugged"
            devices = ("cpu",)
            def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
                from conftest import plain_group_norm
                return plain_group_norm(x, num_groups, weight, bias, eps)
            def from_numpy(self, array, device):
                return array.copy()
            def to_numpy(self, array):
                return array
    """))
    dist = tmp_path / "gn_plugin_for_tests-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gn-plugin-for-tests\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[groupnorm_bench.backends]\nplugged = gn_plugin_for_tests:Plugged\n"
        "brokenplug = gn_plugin_for_tests:DoesNotExist\n"
    )
    code = textwrap.dedent("""
        import backends, harness
        names = backends.names()
        assert "plugged" in names and "brokenplug" in names, names
        reason = backends.get("brokenplug").availability("cpu")
        assert "failed" in reason and "DoesNotExist" in reason, reason
        frame = harness.verify(backends=["plugged"], suite="smoke")
        assert set(frame.status) == {"passed"}, frame
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT, os.path.join(ROOT, "tests")]))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
