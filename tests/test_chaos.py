"""A chaos run: faults in every layer at once, and nothing lost or duplicated."""

import pytest
from chaos import chaos_run, compare
from local_servers import FAULT_KINDS

# array index 8 is the sample's column 1156, where the scene has data: one job a year, the two at once
SMALL = {2020: [8], 2021: [8]}
LOGGED = {"500", "503", "429", "cut", "reset", "delay"}
"""The kinds of :data:`FAULT_KINDS` as the server's log names them."""


@pytest.fixture(scope="module")
def clean(sample_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    report = chaos_run(sample_root, out, SMALL, fault_rate=0.0, kill_rate=0.0)
    assert report["faults"] == {} and report["columns_rerun"] == 0
    return out


@pytest.mark.slow
def test_chaos_run_over_http_loses_nothing(sample_root, clean, tmp_path):
    # seed 9: both jobs' first attempts are among those killed (and retried)
    report = chaos_run(sample_root, tmp_path, SMALL, fault_rate=0.3, kill_rate=0.25, seed=9, first=FAULT_KINDS)
    assert set(report["faults"]) == LOGGED and report["kills"] > 0, report  # every kind of fault did happen
    assert report["failed_after_rerun"] == {}, report
    result = compare(tmp_path, clean)
    assert result["files"] == 2 and result["missing"] == result["extra"] == [], (result, report)
    assert result["differing"] == [] and result["leftovers"] == [], (result, report)


@pytest.mark.slow
def test_chaos_run_over_https_with_a_private_ca(sample_root, clean, tmp_path):
    years = {2020: SMALL[2020]}
    report = chaos_run(sample_root, tmp_path, years, fault_rate=0.1, kill_rate=0.0, tls=True, seed=5)
    assert report["tls"] and report["failed_after_rerun"] == {}, report
    result = compare(tmp_path, clean)
    assert result["files"] == 1 and result["differing"] == [] and result["leftovers"] == [], result
