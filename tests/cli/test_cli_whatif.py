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
    assert "Seesaw" in capsys.readouterr().out


def test_bad_sweep_exits_2_one_line(tmp_path, capsys):
    code = main(["--model", "llama-2-7b", "--cluster", "8xA10", "--sweep", "nope=1:2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and len(err.strip().splitlines()) == 1


def test_bad_price_exits_2(tmp_path, capsys):
    code = main(["--model", "llama-2-7b", "--cluster", "8xA10", "--price-per-gpu-hour", "8xL4=1",
                 "--out", str(tmp_path)])
    assert code == 2 and "--price-per-gpu-hour" in capsys.readouterr().err
