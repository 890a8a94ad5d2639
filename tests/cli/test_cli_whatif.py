import csv
import json

import pytest

from seesaw.cli.whatif import main


def test_whatif_end_to_end(tmp_path, capsys):
    out = tmp_path / "wi"
    code = main(["--model", "llama-2-7b", "--workload", "random:512:128:200", "--cluster", "8xA10",
                 "--sweep", "gpu_link_gb_per_s=0.5x:4x", "--points", "3", "--out", str(out),
                 "--price-per-gpu-hour", "8xA10=1.2"])
    assert code == 0
    assert (out / "throughput_vs_gpu_link_gb_per_s.png").is_file() and (out / "breakdown.png").is_file()
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["sweep_field"] for r in rows} == {"base", "gpu_link_gb_per_s"}
    assert all(r["usd_per_m_output_tokens"] for r in rows if r["feasible"] == "True")
    printed = capsys.readouterr().out
    assert "Seesaw" in printed and "…" not in printed  # whole cells in a log, not cut to the 80-column default
    assert "cluster" in printed and "best static" in printed


def test_bad_sweep_exits_2_one_line(tmp_path, capsys):
    code = main(["--model", "llama-2-7b", "--cluster", "8xA10", "--sweep", "nope=1:2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and len(err.strip().splitlines()) == 1


def test_bad_price_exits_2(tmp_path, capsys):
    code = main(["--model", "llama-2-7b", "--cluster", "8xA10", "--price-per-gpu-hour", "8xL4=1",
                 "--out", str(tmp_path)])
    assert code == 2 and "--price-per-gpu-hour" in capsys.readouterr().err


def test_nothing_fits_exits_2_saying_why_without_plots(tmp_path, capsys):
    out = tmp_path / "wi"
    code = main(["--model", "llama-2-70b", "--workload", "sharegpt:100", "--cluster", "2xA10", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "nothing fits" in err[0] and "short by" in err[0] and "2xA10" in err[0]
    assert (out / "results.csv").is_file() and not list(out.glob("*.png"))


def test_an_infeasible_cluster_beside_a_feasible_one_is_named_with_its_reason(tmp_path, capsys):
    code = main(["--model", "llama-2-70b", "--workload", "sharegpt:100", "--cluster", "2xA10", "--cluster", "8xA10",
                 "--out", str(tmp_path / "wi")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0 and "infeasible: 2xA10: model: llama-2-70b does not fit" in err


# --deadline / --budget: a small model and workload, few candidates, a short solver limit
SMALL = ["--model", "llama-2-7b", "--workload", "random:512:128:64", "--time-limit", "2"]


def test_deadline_recommends_the_fewest_gpus_among_smaller_counts(capsys):
    code = main([*SMALL, "--cluster", "4xA10", "--deadline", "1h"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert all(f"{n}xA10" in out for n in (1, 2, 4))  # the power-of-two counts below 4 are candidates
    assert out.strip().splitlines()[-1].startswith("recommended: 1xA10 (tp1), ")  # all meet 1 h: fewest GPUs
    assert "$" not in out.strip().splitlines()[-1]  # no prices, no cost


def test_deadline_and_budget_json_picks_the_cheapest(capsys):
    code = main([*SMALL, "--cluster", "2xA10", "--deadline", "90m", "--budget", "5",
                 "--price-per-gpu-hour", "2xA10=1.5", "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    doc = json.loads(cap.out)  # stdout is JSON alone
    assert doc["deadline_s"] == 5400 and doc["budget_usd"] == 5 and doc["ranked_by"] == "total_usd"
    cands = doc["candidates"]
    assert [c["cluster"] for c in cands] == ["1xA10", "2xA10"]
    for c in cands:  # the price of 2xA10 applies to its smaller candidates (per GPU-hour)
        assert c["usd_per_gpu_hour"] == 1.5 and c["meets_deadline"] and c["meets_budget"]
        assert c["total_usd"] == pytest.approx(1.5 * c["num_gpus"] * c["total_s"] / 3600)
    assert doc["recommended"] == min(cands, key=lambda c: c["total_usd"]) and doc["closest"] is None
    assert "recommended: " + doc["recommended"]["cluster"] in cap.err and "┃ cluster" in cap.err


def test_a_deadline_nobody_meets_exits_2_naming_the_closest(capsys):
    code = main([*SMALL, "--cluster", "2xA10", "--deadline", "1s"])
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--deadline" in err[0] and "the closest, 2xA10 (tp2)" in err[0] and "past the 1 s deadline" in err[0]
    assert "1xA10" in cap.out and "2xA10" in cap.out  # the table of candidates is still printed


@pytest.mark.parametrize("text", ["0", "-1h", "abc", "5x", "nan", "inf", "h", ""])
def test_bad_deadline_exits_2_one_line(text, tmp_path, capsys):
    code = main(["--model", "llama-2-7b", "--cluster", "4xA10", "--deadline", text])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "error: --deadline: " in err[0] and "positive duration" in err[0], err


@pytest.mark.parametrize("text, seconds", [("6h", 21600), ("90m", 5400), ("90min", 5400), ("3600s", 3600),
                                           ("1.5h", 5400), ("120", 120), ("2 H", 7200)])
def test_deadline_forms(text, seconds):
    from seesaw.cli.whatif import _deadline_s

    assert _deadline_s(text) == seconds


@pytest.mark.parametrize("args, needle", [
    (["--budget", "10"], "--budget: needs a price for 4xA10"),
    (["--budget", "0", "--price-per-gpu-hour", "4xA10=1"], "--budget: must be a positive number of USD"),
    (["--deadline", "1h", "--sweep", "num_gpus=2,4"], "--sweep: cannot be combined with --deadline/--budget"),
])
def test_budget_without_price_and_deadline_with_sweep_exit_2_one_line(args, needle, capsys):
    code = main(["--model", "llama-2-7b", "--cluster", "4xA10", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_a_price_for_some_clusters_only_is_refused_with_a_deadline(capsys):
    code = main(["--model", "llama-2-7b", "--cluster", "4xA10", "--cluster", "4xL4", "--deadline", "1h",
                 "--price-per-gpu-hour", "4xA10=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no price for 4xL4" in err[0], err


def test_sweep_json_prints_every_row_on_stdout_and_the_table_on_stderr(tmp_path, capsys):
    code = main([*SMALL, "--cluster", "2xA10", "--sweep", "gpu_link_gb_per_s=2x", "--out", str(tmp_path),
                 "--price-per-gpu-hour", "2xA10=1", "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    doc = json.loads(cap.out)
    assert doc["model"] == "llama-2-7b" and doc["num_requests"] == 64
    assert {r["sweep_field"] for r in doc["rows"]} == {"base", "gpu_link_gb_per_s"}
    assert {r["system"] for r in doc["rows"]} >= {"seesaw", "tp2", "dp2"}
    assert all(r["usd_per_m_output_tokens"] > 0 for r in doc["rows"] if r["feasible"])
    assert doc["files"][0] == str(tmp_path / "results.csv")
    assert "best static" in cap.err and "wrote" in cap.err
    # `show` reprints the same table from the CSV without planning, and its JSON holds the same rows
    assert main(["show", str(tmp_path), "--json"]) == 0
    again = capsys.readouterr()
    assert json.loads(again.out)["rows"] == doc["rows"]
    table = lambda text: [ln for ln in text.splitlines() if ln.startswith("│")]  # noqa: E731
    assert table(again.err) == table(cap.err) and table(again.err)


def test_show_refuses_a_file_that_is_not_a_results_csv(tmp_path, capsys):
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    code = main(["show", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "other.csv" in err[0] and "results.csv" in err[0]
    assert main(["show", str(tmp_path / "missing.csv")]) == 2
