"""The map extension's one unmeetable shared-module range, widened in a copy of the installed bundle, and
the installed bundle as ``make setup`` leaves it."""

import shutil
import sys

import pytest
from wcembed.tools.labextension import (
    EXTENSION,
    exact_leaflet_ranges,
    provided_leaflet,
    remote_entry,
    settle_leaflet_range,
)

RELEASED = (
    '(()=>E.e(512)),o("leaflet","1.9.4",(()=>E.e(862))),{{9224:()=>g("default","leaflet",!1,{exact},(()=>E(3481))),'
    '9104:()=>g("default","leaflet",!1,[0],(()=>E(3481)))}}'
)


def prefix_with(tmp_path, bundle: str):
    static = tmp_path / EXTENSION
    static.mkdir(parents=True)
    (static / "remoteEntry.0123abcd.js").write_text(bundle)
    return tmp_path


def test_the_exact_range_is_widened_once_and_nothing_else_changes(tmp_path):
    bundle = RELEASED.format(exact="[4,1,4,0]")
    prefix = prefix_with(tmp_path, bundle)
    assert exact_leaflet_ranges(bundle) == ["1.4.0"] and provided_leaflet(bundle) == "1.9.4"
    assert settle_leaflet_range(prefix) == 1
    settled = remote_entry(prefix).read_text()
    assert settled == RELEASED.format(exact="[0]") and exact_leaflet_ranges(settled) == []
    assert settle_leaflet_range(prefix) == 0 and remote_entry(prefix).read_text() == settled  # idempotent


def test_a_bundle_that_provides_no_leaflet_is_left_alone(tmp_path):
    bundle = RELEASED.format(exact="[4,1,4,0]").replace('o("leaflet","1.9.4"', 'o("proj4","2.15.0"')
    prefix = prefix_with(tmp_path, bundle)
    with pytest.raises(ValueError, match="does not provide leaflet"):
        settle_leaflet_range(prefix)
    assert remote_entry(prefix).read_text() == bundle
    with pytest.raises(FileNotFoundError, match="found 0"):
        remote_entry(tmp_path / "elsewhere")


def test_the_installed_bundle_is_settled_and_still_provides_its_leaflet(tmp_path):
    """``make setup`` settled the environment's bundle; a copy of it as released (the range put back)
    settles to the same bytes."""
    installed = remote_entry(sys.prefix).read_text()
    assert exact_leaflet_ranges(installed) == [] and provided_leaflet(installed)
    shutil.copytree(remote_entry(sys.prefix).parent, tmp_path / EXTENSION)
    entry = remote_entry(tmp_path)
    released = installed.replace('"leaflet",!1,[0],(()=>E.e(862)', '"leaflet",!1,[4,1,4,0],(()=>E.e(862)', 1)
    entry.write_text(released)
    assert exact_leaflet_ranges(entry.read_text()) == ["1.4.0"]
    assert settle_leaflet_range(tmp_path) == 1 and entry.read_text() == installed
