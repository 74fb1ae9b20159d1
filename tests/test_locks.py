"""The lock files: exact versions for every requirement of each install, and this environment built from one."""

import importlib.metadata
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from wcembed import ROOT

EXTRAS = ("worker", "explore", "test")
EXPLORE_STACK = {"lancedb", "leafmap", "ipyleaflet", "scikit-learn", "jupyterlab", "owslib"}


def pins(extra: str) -> dict[str, str]:
    """``name -> version`` of ``requirements/{extra}.txt``."""
    lines = (ROOT / "requirements" / f"{extra}.txt").read_text().splitlines()
    found = [re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", ln) for ln in lines if ln and not ln.startswith("#")]
    assert all(found), "a lock line that is not name==version"
    return {canonicalize_name(m[1]): m[2] for m in found}


def requirements(extra: str) -> list[Requirement]:
    """The project's requirements for ``.[extra]``, its own extras expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = [Requirement(r) for r in project["dependencies"]]
    todo, seen = [extra], set()
    while todo:
        name = todo.pop()
        seen.add(name)
        for r in map(Requirement, project["optional-dependencies"][name]):
            if canonicalize_name(r.name) == "wcembed":
                todo += [e for e in r.extras if e not in seen]
            else:
                out.append(r)
    return out


@pytest.mark.parametrize("extra", EXTRAS)
def test_each_lock_pins_every_requirement_of_its_install(extra):
    locked = pins(extra)
    for req in requirements(extra):
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} is not in requirements/{extra}.txt: run make lock"
        assert req.specifier.contains(locked[name], prereleases=True), f"{name}=={locked[name]} breaks {req}"


def test_the_locks_agree_and_the_worker_leaves_the_explore_stack_out():
    worker, explore, test = (pins(e) for e in EXTRAS)
    assert not EXPLORE_STACK & set(worker)
    assert set(explore) >= EXPLORE_STACK
    for small in (worker, explore):
        assert {n: v for n, v in small.items() if test.get(n) != v} == {}  # the same versions everywhere
    assert test["torch"] == worker["torch"] == "2.13.0"  # the image's torch is CI's


def test_this_environment_is_the_test_lock():
    """make setup installs requirements/test.txt: every pinned version is the installed one."""
    wrong = {}
    for name, version in pins("test").items():
        installed = importlib.metadata.version(name)
        if installed.split("+")[0] != version:  # torch's local label (+cpu) is the build, not the version
            wrong[name] = (version, installed)
    assert wrong == {}, "run make setup"
