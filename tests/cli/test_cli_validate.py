"""``seesaw-validate`` end to end on a tiny random checkpoint (2 gloo ranks; no accuracy assertions: the
figures on this machine are in docs/validation/)."""
from __future__ import annotations

import json

import pytest

from helpers.checkpoints import LLAMA_GQA, write_random_checkpoint
from seesaw.cli.validate import main
from seesaw.planner.hardware import load_cluster


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt"), LLAMA_GQA)


def test_validate_writes_report_json_and_plots(checkpoint, tmp_path, capsys):
    out = tmp_path / "val"
    code = main(["--checkpoint", str(checkpoint), "--cluster", "2xcpu", "--dataset", "random", "--num-prompts", "6",
                 "--input-len", "12", "--output-len", "5", "--layout", "tp2:pp2", "--layout", "dp2:dp2",
                 "--repeats", "2", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    data = json.loads((out / "results.json").read_text())
    runs = {r["label"]: r for r in data["runs"]}
    assert set(runs) == {"tp2->pp2", "dp2"}
    assert sum(r["chosen"] for r in runs.values()) == 1
    for label, r in runs.items():
        raws = [x for x in data["raw"] if x["label"] == label]
        assert [x["round"] for x in raws] == [1, 2]
        for x in raws:
            assert x["metrics"]["prompt_tokens"] == 72 and x["metrics"]["output_tokens"] == 30
        # repeats are averaged
        assert r["measured_tokens_per_s"] == pytest.approx(sum(x["metrics"]["tokens_per_s"] for x in raws) / 2)
        raw = raws[0]
        kinds = {s["kind"] for s in raw["steps"]}
        assert {"prefill", "decode"} <= kinds
        # phase times in the comparison are the step records' sums (mean over replicas)
        for ph in ("prefill", "decode"):
            per_replica = {}
            for s in raw["steps"]:
                if s["kind"] == ph:
                    per_replica[s["replica"]] = per_replica.get(s["replica"], 0.0) + s["service_s"]
            assert r["phases"][ph]["measured_s"] > 0 and max(per_replica.values()) > 0
            assert r["phases"][ph]["predicted_s"] > 0
    assert runs["tp2->pp2"]["transitions"] >= 1 and runs["dp2"]["transitions"] == 0
    assert {"step_mape", "throughput_mape", "kendall_tau", "chosen_gap"} <= set(data["summary"])
    report = (out / "report.md").read_text()
    assert "step-time MAPE" in report and "| tp2->pp2" in report
    assert (out / "throughput.png").stat().st_size > 0 and (out / "step_times.png").stat().st_size > 0
    # the machine's drift from the profile: calibrate's probes re-timed, set against the profile's figures
    drift, gpu = data["meta"]["drift"], load_cluster("2xcpu").gpu
    assert drift["stream_gb_per_s"] > 0 and drift["gemm_gflop_per_s"] > 0
    assert drift["profile_memory_gb_per_s"] == gpu.memory_gb_per_s
    assert drift["profile_gemm_gflop_per_s"] == pytest.approx(gpu.peak_flops / 1e9)
    # the decode-shaped probe against the profile's kernel model of the same GEMM (16 rows, cold weights)
    assert drift["decode_gemm_s"] > 0 and drift["profile_decode_gemm_s"] > 0
    assert "machine now against the profile" in report and "16-row GEMM over the cold weights" in report
    # --replay re-compares the saved measurements without running anything
    again = tmp_path / "again"
    code = main(["--checkpoint", str(checkpoint), "--cluster", "2xcpu", "--dataset", "random", "--num-prompts", "6",
                 "--input-len", "12", "--output-len", "5", "--layout", "tp2:pp2", "--layout", "dp2:dp2",
                 "--replay", str(out / "results.json"), "--out", str(again), "--no-progress", "--json"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    # --json: the table's figures on stdout (results.json without the raw records), the table on stderr
    shown = json.loads(printed.out)
    saved = json.loads((again / "results.json").read_text())
    assert set(shown) == {"meta", "summary", "runs"} and "raw" in saved
    assert [r["label"] for r in shown["runs"]] == [r["label"] for r in saved["runs"]]
    assert shown["runs"][0]["measured_tokens_per_s"] == pytest.approx(saved["runs"][0]["measured_tokens_per_s"])
    assert shown["summary"]["throughput_mape"] == pytest.approx(saved["summary"]["throughput_mape"])
    assert "step-time MAPE" in printed.err and "step-time MAPE" not in printed.out
    replayed = {r["label"]: r for r in saved["runs"]}
    for label in runs:
        assert replayed[label]["measured_tokens_per_s"] == pytest.approx(runs[label]["measured_tokens_per_s"])
        assert replayed[label]["phases"]["decode"]["predicted_s"] == pytest.approx(runs[label]["phases"]["decode"]["predicted_s"])
    assert json.loads((again / "results.json").read_text())["meta"]["drift"] is None  # nothing was run


@pytest.mark.parametrize("args, needle", [
    (["--layout", "tp2"], "--layout"),
    (["--layout", "tp4:tp4"], "--layout"),
    (["--num-prompts", "0"], "--num-prompts"),
    (["--dataset", "nope"], "--dataset"),
])
def test_bad_input_exits_2_with_one_line(checkpoint, tmp_path, capsys, args, needle):
    code = main(["--checkpoint", str(checkpoint), "--cluster", "2xcpu", "--dataset", "random", "--out",
                 str(tmp_path / "v"), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
