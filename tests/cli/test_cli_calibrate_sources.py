"""``seesaw-calibrate --from-aiconfigurator`` and ``--from-benchmarks``: profiles from measurements made
elsewhere, written as loadable catalog files; bad input exits 2 with one line."""
from __future__ import annotations

import json

import pytest

from seesaw.cli.calibrate import main
from seesaw.planner.calibration.benchmarks import load_runs
from seesaw.planner.hardware import load_catalog, load_cluster


def test_from_aiconfigurator_writes_a_profile_with_measured_curves(tmp_path, capsys):
    pytest.importorskip("aiconfigurator_core")
    out = tmp_path / "l40s.yaml"
    assert main(["--from-aiconfigurator", "l40s", "--out", str(out)]) == 0
    (spec,) = load_catalog(out).values()
    assert spec.name == "L40S" and sorted(spec.allreduce_us) == [2, 4, 8]
    assert "AIConfigurator" in spec.source["efficiency"] and "measured" in spec.source["collectives"]
    cluster_file = tmp_path / "c.yaml"
    cluster_file.write_text("gpu: l40s.yaml\nnum_gpus: 4\n")
    assert load_cluster(str(cluster_file)).gpu.op_overhead_us == spec.op_overhead_us
    assert "fit residuals, gemm" in capsys.readouterr().out


def test_from_aiconfigurator_json_prints_the_fit_on_stdout(tmp_path, capsys):
    pytest.importorskip("aiconfigurator_core")
    out = tmp_path / "l40s.yaml"
    assert main(["--from-aiconfigurator", "l40s", "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr()
    data = json.loads(printed.out)
    assert "fit residuals, gemm" in printed.err and data["system"] == "l40s"
    (spec,) = load_catalog(out).values()
    assert data["profile"]["name"] == spec.name and data["profile"]["entry"]["op_overhead_us"] == spec.op_overhead_us
    assert data["fit_quality"]["gemm"]["samples"] > 0


def test_from_benchmarks_fits_the_efficiency_to_a_measured_run(tmp_path, capsys):
    """One measured run (TensorRT-LLM 0.14's Llama-3.1-8B on one A100-SXM4-80GB, bench/data/published.jsonl)
    fixes the memory efficiency; the fitted profile predicts it within a few percent."""
    runs = tmp_path / "runs.csv"
    runs.write_text("model,cluster,layout,workload,engine,metric,value\n"
                    "llama-3-8b,1xA100-SXM-80GB,tp1,random:2048:128:400,trtllm,output_tokens_per_s,795.389\n")
    out = tmp_path / "a100.yaml"
    assert main(["--from-benchmarks", str(runs), "--out", str(out)]) == 0
    (spec,) = load_catalog(out).values()
    assert "--from-benchmarks" in spec.source["efficiency"]
    report = capsys.readouterr().out
    assert "memory_efficiency:" in report and "wrote" in report


def test_from_benchmarks_json_prints_the_fit_on_stdout(tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    runs.write_text("model,cluster,layout,workload,engine,metric,value\n"
                    "llama-3-8b,1xA100-SXM-80GB,tp1,random:2048:128:400,trtllm,output_tokens_per_s,795.389\n")
    out = tmp_path / "a100.yaml"
    assert main(["--from-benchmarks", str(runs), "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr()
    data = json.loads(printed.out)  # stdout is the JSON alone; the table on stderr
    assert "memory_efficiency:" in printed.err and "wrote" in printed.err
    (spec,) = load_catalog(out).values()
    assert data["profile"]["name"] == spec.name and data["out"] == str(out)
    (run,) = data["runs"]
    assert run["measured"] == 795.389 and run["metric"] == "output_tokens_per_s"
    assert run["error_after"] == pytest.approx(run["predicted_after"] / run["measured"] - 1)
    assert data["terms"]["memory_efficiency"]["after"] == pytest.approx(spec.memory_efficiency)


def test_vllm_output_json_rows(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"elapsed_time": 10.0, "num_requests": 100, "total_num_tokens": 5000,
                                                 "requests_per_second": 10.0, "tokens_per_second": 500.0}))
    path = tmp_path / "runs.csv"
    path.write_text("model,cluster,layout,workload,vllm_json\nllama-3-8b,1xA10,tp1,random:32:16:100,r.json\n")
    (run,) = load_runs(path)
    assert (run.metric, run.value, run.engine) == ("tokens_per_s", 500.0, "vllm")


@pytest.mark.parametrize("args, text", [
    (["--from-benchmarks", "missing.csv"], "no such file"),
    (["--from-aiconfigurator", "v100"], "unknown system 'v100'"),
    (["--from-aiconfigurator", "l40s", "--from-benchmarks", "x.csv"], "give one of"),
])
def test_bad_sources_exit_2_with_one_line(args, text, capsys, tmp_path):
    pytest.importorskip("aiconfigurator_core")
    code = main([*args, "--out", str(tmp_path / "p.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_csv_names_line_and_field(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    path.write_text("model,cluster,layout,workload,metric,value\nllama-3-8b,1xA10,tp1,random:8:8:4,speed,3\n")
    assert main(["--from-benchmarks", str(path), "--out", str(tmp_path / "p.yaml")]) == 2
    assert "line 2: metric" in capsys.readouterr().err
