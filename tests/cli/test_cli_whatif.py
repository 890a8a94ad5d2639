import csv

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
