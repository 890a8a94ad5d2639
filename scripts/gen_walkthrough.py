"""Regenerate the quoted outputs of a walkthrough (``examples/README.md``) by running its commands.

    python scripts/gen_walkthrough.py [examples/README.md] [--check]

Each quoted block is preceded by a directive comment naming the command and how to abridge its output::

    <!-- run: seesaw-plan --model llama-2-7b --cluster 8xA10 | keep: prefill layout, decode layout -->
    ```
    (replaced by "$ command" and the command's output)
    ```

- ``run: CMD``: run ``CMD`` with bash in a scratch folder that links ``examples/``, ``docs/`` and
  ``scripts/`` (stdout then stderr, terminal 110 columns wide); the block shows ``$ CMD`` and the output.
- ``keep: LABEL, ...``: of a table, keep the title, header and the rows whose first cell starts with a
  label, with ``...`` where rows were left out.
- ``json-keys: KEY, ...``: of a JSON object, keep these top-level keys, with ``...`` between them.
- ``hidden: CMD``: run ``CMD`` in the scratch folder first (setting up a later block), quote nothing.

``--check`` exits 1 (printing a diff) when the file differs from what its commands print now, apart from the
solver's wall time (``in 0.50 s``), which varies from run to run; the test suite runs it, so a quote cannot
drift from what its command prints.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^<!-- (run|hidden): (.*?)(?: \| (keep|json-keys): (.*?))? -->$")
SOLVER_TIME = re.compile(r"(solver: \S+ \S+) in [0-9.]+ s")


def _run(cmd: str, cwd: Path) -> str:
    env = {**os.environ, "COLUMNS": "110", "TERM": "dumb", "PYTHONPATH": str(ROOT)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return "\n".join(line.rstrip() for line in (r.stdout + r.stderr).splitlines()).rstrip("\n")


def _keep_rows(text: str, labels: list[str]) -> str:
    """Title, header and the rows whose label starts with one of ``labels``; ``...`` for left-out rows."""
    out, dropped, keep_row = [], False, False
    in_body = False
    for line in text.splitlines():
        if line.startswith("┡"):
            in_body = True
            out.append(line)
            continue
        if in_body and line.startswith("│"):
            label = line.split("│")[1].strip()
            if label:  # a new row (continuation lines have an empty first cell)
                keep_row = any(label.startswith(x) for x in labels)
            if keep_row:
                if dropped:
                    out.append("...")
                    dropped = False
                out.append(line)
            else:
                dropped = True
            continue
        if in_body and line.startswith("└"):
            in_body = False
            if dropped:
                out.append("...")
                dropped = False
            continue  # the bottom border goes with the abridged rows
        out.append(line)
    return "\n".join(out)


def _keep_json(text: str, keys: list[str]) -> str:
    data = json.loads(text)
    lines = ["{"]
    for k in keys:
        body = json.dumps({k: data[k]}, indent=2).splitlines()[1:-1]
        lines += ["  ...", *body]
    return "\n".join([*lines, "  ...", "}"])


def render(path: Path) -> str:
    """The walkthrough with every quoted block replaced by what its command prints now."""
    lines = path.read_text().splitlines()
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="walkthrough-") as tmp:
        scratch = Path(tmp)
        for name in ("examples", "docs", "scripts"):
            (scratch / name).symlink_to(ROOT / name)
        i = 0
        while i < len(lines):
            m = DIRECTIVE.match(lines[i])
            out.append(lines[i])
            i += 1
            if not m:
                continue
            kind, cmd, how, what = m.groups()
            printed = _run(cmd, scratch)
            if kind == "hidden":
                continue
            if how == "keep":
                printed = _keep_rows(printed, [x.strip() for x in what.split(",")])
            elif how == "json-keys":
                printed = _keep_json(printed, [x.strip() for x in what.split(",")])
            if i >= len(lines) or lines[i] != "```":
                raise SystemExit(f"{path}:{i}: a run directive must be followed by a ``` block")
            end = lines.index("```", i + 1)
            out += ["```", f"$ {cmd}", *printed.splitlines(), "```"]
            i = end + 1
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default=str(ROOT / "examples" / "README.md"))
    ap.add_argument("--check", action="store_true", help="exit 1 when the file differs from a fresh run")
    args = ap.parse_args()
    path = Path(args.path)
    fresh = render(path)
    if not args.check:
        path.write_text(fresh)
        print(f"wrote {path}")
        return 0
    old = path.read_text()
    if SOLVER_TIME.sub(r"\1", old) == SOLVER_TIME.sub(r"\1", fresh):
        return 0
    sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), fresh.splitlines(True), str(path), "fresh run"))
    return 1


if __name__ == "__main__":
    sys.exit(main())
