"""The walkthrough's quoted outputs are what their commands print today (scripts/gen_walkthrough.py --check),
and the abridging keeps the rows asked for."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_PATH = ROOT / "scripts" / "gen_walkthrough.py"
_spec = importlib.util.spec_from_file_location("gen_walkthrough", _PATH)
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

TABLE = """\
                 title
┏━━━━━━━━━━┳━━━━━━━┓
┃ item     ┃ plan  ┃
┡━━━━━━━━━━╇━━━━━━━┩
│ a row    │ 1     │
│ b row    │ 2     │
│          │ more  │
│ c row    │ 3     │
│ d row    │ 4     │
└──────────┴───────┘
chosen: x"""


def test_keep_rows_keeps_labelled_rows_with_their_continuations():
    got = gen._keep_rows(TABLE, ["b row", "d"]).splitlines()
    assert got[:4] == TABLE.splitlines()[:4]
    assert got[4:] == ["...", "│ b row    │ 2     │", "│          │ more  │", "...", "│ d row    │ 4     │", "chosen: x"]


def test_keep_json_keeps_the_keys_in_order():
    assert gen._keep_json('{"a": 1, "b": {"x": 2}, "c": 3}', ["b", "c"]).splitlines() == \
        ["{", "  ...", '  "b": {', '    "x": 2', "  }", "  ...", '  "c": 3', "  ...", "}"]


@pytest.mark.parametrize("doc", ["examples/README.md", "README.md", "docs/whatif.md"])
def test_docs_quote_what_their_commands_print_today(doc):
    r = subprocess.run([sys.executable, str(_PATH), str(ROOT / doc), "--check"], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, f"{doc} drifted; run python scripts/gen_walkthrough.py {doc}\n" + r.stdout[-4000:]
