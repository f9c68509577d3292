"""``python -m benchmarks.run --quick``: JSON schema, figures, and the generated tables of RESULTS.md.

The quick run writes its JSON and a RESULTS.md copy into a temporary folder, never
into ``benchmarks/``.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil

import pytest

from benchmarks import run, tables

ROOT = pathlib.Path(__file__).resolve().parents[1]
HAND_WRITTEN = "Hand-written note that the generator must keep."


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    results_md = tmp / "RESULTS.md"
    shutil.copy(ROOT / "benchmarks" / "RESULTS.md", results_md)
    # A section without markers (appended) and a hand-written line between two generated blocks.
    text = results_md.read_text()
    text = text.replace(tables.end_marker("physics"), tables.end_marker("physics") + "\n\n" + HAND_WRITTEN, 1)
    original = text
    results_md.write_text(text)
    data = run.main(["--quick", "--out", str(tmp / "out"), "--results_md", str(results_md)])
    return {"data": data, "tmp": tmp, "results_md": results_md, "original": original}


def test_json_written_with_schema(quick_run):
    files = list((quick_run["tmp"] / "out").glob("*-quick.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["mode"] == "quick"
    assert data["command"].startswith("python -m benchmarks.run --quick")
    for key in ("device", "jax", "jaxlib", "mujoco", "mujoco-mjx", "date"):
        assert key in data["environment"]
    kinds = {r["benchmark"] for r in data["results"]}
    assert kinds == set(run.REQUIRED_KEYS), kinds
    assert run.check_figures(data["results"]) == []
    for record in data["results"]:
        for key in run.REQUIRED_KEYS[record["benchmark"]]:
            assert key in record, (record["benchmark"], key)


def test_figures_finite_and_positive(quick_run):
    results = quick_run["data"]["results"]
    checked = 0
    for record in results:
        for key, value in record.items():
            if key in run.POSITIVE_FIGURES:
                for v in value if isinstance(value, list) else [value]:
                    assert math.isfinite(v) and v > 0, (record["benchmark"], key, v)
                    checked += 1
    assert checked > 20
    training = [r for r in results if r["benchmark"] == "training"]
    assert all(0 < r["ratio_train_to_physics"] for r in training)
    assert all(not r["retraced"] for r in training)
    seeds = sorted((r for r in results if r["benchmark"] == "seeds"), key=lambda r: r["num_seeds"])
    assert [r["num_seeds"] for r in seeds] == [1, 2]
    assert seeds[0]["speedup_vs_1"] == pytest.approx(1.0)


def test_peer_and_multi_device_records(quick_run):
    results = quick_run["data"]["results"]
    peer = [r for r in results if r["benchmark"] == "peer_ppo"]
    ours = [r for r in peer if r["learner"].startswith("metarl_jax")]
    assert len(ours) == 1 and ours[0]["train_env_steps_per_s"] > 0 and math.isfinite(ours[0]["final_return"])
    brax = [r for r in peer if r["learner"].startswith("brax")]
    assert brax, "brax's PPO attempt must be recorded"
    for record in brax:
        assert record["status"] == "ok" or record["exception_type"]
    devices = [r for r in results if r["benchmark"] == "multi_device"]
    assert devices
    import jax

    if jax.device_count() == 1:
        assert devices[0]["status"] == "only one device present"
        forced = [r for r in devices if r.get("forced_host_devices")]
        assert all(r["status"] == "measured" for r in forced), forced


def test_tables_between_markers_and_hand_text_kept(quick_run):
    text = quick_run["results_md"].read_text()
    original = quick_run["original"]
    for name in tables.SECTIONS:
        begin, end = tables.begin_marker(name), tables.end_marker(name)
        assert text.count(begin) == 1 and text.count(end) == 1, name
        block = text[text.index(begin) + len(begin):text.index(end)]
        assert "| " in block and "python -m benchmarks.run --quick" in block, name
        assert "jaxlib" in block and "mujoco-mjx" in block, name
    # Everything outside the markers is unchanged (whatever was between markers may change).
    def outside(s: str) -> str:
        for name in tables.SECTIONS:
            begin, end = tables.begin_marker(name), tables.end_marker(name)
            if begin in s:
                s = s[:s.index(begin)] + s[s.index(end) + len(end):]
        return s

    kept = outside(original)
    assert HAND_WRITTEN in text
    assert outside(text).startswith(kept.rstrip("\n"))


def test_splice_appends_missing_sections_and_is_idempotent():
    data = {"environment": {"device": "cpu:cpu x1", "platform": "cpu", "device_count": 1, "jax": "j",
                            "jaxlib": "jl", "mujoco": "m", "mujoco-mjx": "mx", "date": "d"},
            "mode": "quick", "command": "python -m benchmarks.run --quick", "results": []}
    blocks = tables.render(data)
    text = tables.splice("# Notes\n\nkept\n", blocks)
    assert text.startswith("# Notes\n\nkept\n")
    assert all(text.count(tables.begin_marker(name)) == 1 for name in tables.SECTIONS)
    assert tables.splice(text, blocks) == text


# ----------------------------------------------------------------------------- the GPU run-book (make bench-gpu)


def test_gpu_runbook_dry_run_in_process_shares_the_quick_compile(quick_run, tmp_path):
    """The run-book's --dry_run, in this process after the quick run: its PPO comparison is the quick
    run's compiled "ours"; the compile section times its PPO program again; the gpu_* tables are written."""
    from benchmarks import gpu_runbook

    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Results\n\nkept\n")
    data = gpu_runbook.main(["--dry_run", "--in_process", "--only", "peer_ppo,compile", "--out", str(tmp_path),
                             "--results_md", str(results_md)])
    assert len(list(tmp_path.glob("*-dry_run.json"))) == 1
    sections = {r["section"]: r for r in data["results"] if r["benchmark"] == "section"}
    assert set(sections) == {"peer_ppo", "compile"} and all(r["status"] == "ok" for r in sections.values()), sections
    ours = [r for r in data["results"] if r["benchmark"] == "peer_ppo"]
    assert len(ours) == 1 and ours[0]["learner"].startswith("metarl_jax") and math.isfinite(ours[0]["final_return"])
    compiled = {r["algo"]: r for r in data["results"] if r["benchmark"] == "compile"}
    assert set(compiled) == {"ppo"} and all(r["status"] == "ok" and r["compile_s"] > 0
                                                   for r in compiled.values()), compiled
    text = results_md.read_text()
    assert text.startswith("# Results\n\nkept\n")
    for name in tables.RUNBOOK_TITLES:
        assert text.count(tables.begin_marker(name)) == 1, name
    assert "| ppo | point_corner | brax | 64x64 |" in text


def test_gpu_runbook_stops_an_overrunning_section_and_keeps_what_it_wrote():
    from benchmarks import gpu_runbook

    sections = {"overrun": {"box_s": 3, "kind": "_selftest_overrun"},
                "after": {"box_s": 100, "kind": "_selftest_overrun"}}
    results = gpu_runbook.run_book(sections, budget_s=8.0, grace_s=1.0)
    assert results[0] == {"benchmark": "selftest", "index": 0}  # written before the section overran
    assert results[1]["section"] == "overrun" and results[1]["status"] == "overran" and results[1]["records"] == 1
    assert results[1]["wall_s"] < 3 + 1 + 3
    # The second section's box shrinks to what is left of the budget (or it is skipped).
    assert results[-1]["section"] == "after" and results[-1]["box_s"] <= 8.0 - results[1]["wall_s"]


@pytest.mark.slow
def test_gpu_runbook_full_dry_run_in_subprocesses(tmp_path):
    """Every section of the run-book at tiny sizes, each in its boxed subprocess, as on a GPU."""
    from benchmarks import gpu_runbook

    data = gpu_runbook.main(["--dry_run", "--budget_s", "900", "--out", str(tmp_path),
                             "--results_md", str(tmp_path / "RESULTS.md")])
    sections = {r["section"]: r for r in data["results"] if r["benchmark"] == "section"}
    assert set(sections) == set(gpu_runbook.SECTIONS)
    assert all(r["status"] == "ok" and r["records"] > 0 for r in sections.values()), sections
    kinds = {r["benchmark"] for r in data["results"]}
    assert {"training", "seeds", "peer_ppo", "peer_sac", "compile"} <= kinds
    assert sorted(r["num_seeds"] for r in data["results"] if r["benchmark"] == "seeds") == [1, 4, 16]
    assert run.check_figures([r for r in data["results"] if r["benchmark"] in run.REQUIRED_KEYS]) == []
