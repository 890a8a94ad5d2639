"""The committed JSON Schema (codegen/plan.schema.json) is the one the code exports."""
import json
from pathlib import Path

from seesaw.codegen import plan_json_schema

SCHEMA = Path(__file__).resolve().parents[2] / "codegen" / "plan.schema.json"


def test_committed_schema_is_current():
    # regenerate with: seesaw-plan schema -o codegen/plan.schema.json
    assert json.loads(SCHEMA.read_text()) == plan_json_schema()
