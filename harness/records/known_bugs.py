"""Known bugs of real frameworks: failures kept failed, printed apart, and avoided by selection.

The data lives in ``harness/records/known_bugs.toml`` (its header states the policy). A
:class:`KnownBug` names a *class* of problems (backend, a version range of a package,
device, layouts, dtypes, ranks, passes) and the failure statuses it explains:

* :func:`annotate` marks each failed row in a known bug's class with the bug's id (the
  ``known_bug`` column); the row's status stays what it is.
* Exit codes and the self-test count only *unexpected* failures (:func:`unexpected`).
* :func:`not_reproduced` lists bugs whose class was verified on a triggering input in a
  run without any failure: the framework may have fixed it.
* :func:`excluding` tells :mod:`harness.commands.selection` that a backend is known wrong for a
  problem's class, so ``select``/``fastest`` never return it there.

Versions are those of the installed packages recorded in each row (``versions``, read from
package metadata): no framework is imported here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

from backends.errors import InvalidArgumentError

from .results import FAILED, PASSES

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "known_bugs.toml")
_LISTS = ("layouts", "dtypes", "ranks", "passes", "statuses", "distributions", "outputs")
_OPTIONAL = ("outputs", "min_group_size", "max_group_size")


@dataclasses.dataclass(frozen=True)
class KnownBug:
    """One entry of the known-bug file (see its header for the meaning of each field)."""

    id: str
    backend: str
    package: str
    versions: str
    device: str
    layouts: tuple
    dtypes: tuple
    ranks: tuple
    passes: tuple
    statuses: tuple
    distributions: tuple
    description: str
    case: str
    magnitude: str
    outputs: tuple = ("y", "grad_x", "grad_weight", "grad_bias")
    min_group_size: int = 0
    max_group_size: int | None = None

    @property
    def rerun(self) -> str:
        """The one command that shows the bug."""
        return f"gnbench verify --backends {self.backend} --devices {self.device} --case {self.case}"

    def version_matches(self, installed: str | None) -> bool:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version

        if not installed:
            return False
        try:
            return Version(installed) in SpecifierSet(self.versions, prereleases=True)
        except InvalidVersion:
            return False

    def covers(self, backend: str, device: str, layout: str, dtype: str, rank: int, pass_: str = "forward",
               installed: str | None = None, group_size: int | None = None, output: str | None = None) -> bool:
        """Whether a problem of this description is in the bug's class (``output``: the
        output a failed row names; None for a problem not yet run)."""
        sized = group_size is None or (group_size >= self.min_group_size
                                       and (self.max_group_size is None or group_size <= self.max_group_size))
        return (backend == self.backend and device == self.device and layout in self.layouts
                and dtype in self.dtypes and rank in self.ranks and pass_ in self.passes
                and (output is None or output in self.outputs) and sized
                and self.version_matches(installed))


def _parse(entry: dict, where: str) -> KnownBug:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    fields = {f.name for f in dataclasses.fields(KnownBug)}
    missing, unknown = fields - set(entry) - set(_OPTIONAL), set(entry) - fields
    if missing or unknown:
        raise InvalidArgumentError(
            f"{where}: known bug {entry.get('id', '?')!r} "
            + (f"lacks {', '.join(sorted(missing))}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"has unknown fields {', '.join(sorted(unknown))}" if unknown else ""))
    try:
        SpecifierSet(entry["versions"])
    except InvalidSpecifier:
        raise InvalidArgumentError(f"{where}: known bug {entry['id']!r}: versions {entry['versions']!r} "
                                   "is not a PEP 440 specifier such as '>=2.1,<2.14'") from None
    values = {k: tuple(v) if k in _LISTS else (v.strip() if isinstance(v, str) else v) for k, v in entry.items()}
    unknown_passes = set(values["passes"]) - set(PASSES)
    if unknown_passes:
        raise InvalidArgumentError(f"{where}: known bug {entry['id']!r}: passes must be among {PASSES}")
    return KnownBug(**values)


def load(path: str | None = None) -> tuple[KnownBug, ...]:
    """The entries of ``path`` (default: :data:`PATH`, the project's file); clear errors for
    a bad entry."""
    return _load(os.path.abspath(path or PATH))


@functools.lru_cache(maxsize=8)
def _load(path: str) -> tuple[KnownBug, ...]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    bugs = tuple(_parse(entry, path) for entry in data.get("bug", ()))
    ids = [bug.id for bug in bugs]
    if len(set(ids)) != len(ids):
        raise InvalidArgumentError(f"{path}: known bug ids repeat: {sorted(i for i in ids if ids.count(i) > 1)}")
    return bugs


def _row_class(row) -> dict:
    """The keyword arguments of :meth:`KnownBug.covers` a result row gives."""
    group_size = row.get("group_size")
    return dict(pass_=row.get("pass", "forward") or "forward",
                group_size=None if group_size is None or group_size != group_size else int(group_size),
                output=row.get("output") or None)


def _installed(versions, package: str) -> str | None:
    if isinstance(versions, str):
        try:
            versions = json.loads(versions)
        except json.JSONDecodeError:
            return None
    return (versions or {}).get(package)


def match(row, bugs=None) -> str:
    """The id of the known bug that explains a failed row (mapping with the result
    columns), or "" when none does (or the row did not fail)."""
    for bug in load() if bugs is None else bugs:
        if row["status"] in bug.statuses and bug.covers(
                row["backend"], row["device"], row["layout"], row["dtype"], len(str(row["shape"]).split("x")),
                installed=_installed(row.get("versions"), bug.package), **_row_class(row)):
            return bug.id
    return ""


def annotate(row: dict, bugs=None) -> dict:
    """Set ``row["known_bug"]`` (in place) and return the row."""
    row["known_bug"] = match(row, bugs)
    return row


def unexpected(frame):
    """Boolean Series: failed rows that no known bug explains."""
    known = frame["known_bug"].fillna("").astype(str) if "known_bug" in frame else ""
    return frame.status.isin(FAILED) & (known == "")


def not_reproduced(frame, bugs=None) -> list[tuple[KnownBug, int]]:
    """Bugs whose class ran on a triggering distribution in ``frame`` without one failure:
    (bug, rows of the class on those inputs). Such a bug may be fixed in this version."""
    found = []
    if frame is None or frame.empty:
        return found
    for bug in load() if bugs is None else bugs:
        rows = [
            row
            for row in frame.to_dict("records")
            if row["distribution"] in bug.distributions
            and row["status"] not in ("unsupported", "skipped")
            and bug.covers(
                row["backend"],
                row["device"],
                row["layout"],
                row["dtype"],
                len(str(row["shape"]).split("x")),
                installed=_installed(row.get("versions"), bug.package),
                **{**_row_class(row), "output": None},
            )
        ]
        if rows and not any(row["status"] in bug.statuses for row in rows):
            found.append((bug, len(rows)))
    return found


def excluding(backend: str, case, installed_versions: dict, bugs=None):
    """The known bug that puts ``backend`` out of the running for ``case``'s class, or None."""
    for bug in load() if bugs is None else bugs:
        if bug.covers(
            backend,
            case.device,
            case.layout,
            case.dtype,
            len(case.shape),
            case.pass_,
            installed_versions.get(bug.package),
            group_size=case.group_size,
        ):
            return bug
    return None
