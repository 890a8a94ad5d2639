"""Codegen: lower a planner decision and the IR into the static execution plan (DESIGN.md section 3),
validate plan files, and export the plan's JSON Schema."""
from seesaw.codegen.checks import check_plan, config_from_plan
from seesaw.codegen.plan import (
    SCHEMA_VERSION, ExecutionPlan, Instruction, KVPlan, LayoutSpec, ModelInfo, PhasePlan, PredictionPlan,
    ProcessGroup, RankPlan, SchedulePlan, ShardSlice, Summary,
)
from seesaw.codegen.validate import (
    plan_json_schema, validate_plan_data, validate_plan_file, write_json_schema, write_plan,
)

_LOWERING = ("build_execution_plan", "build_phase_plan", "process_groups")


def __getattr__(name: str):
    """Lowering needs the planner's decision types; import it lazily so that the runtime can read and
    validate plans (``seesaw.codegen.plan`` / ``validate``) without importing ``seesaw.planner``."""
    if name in _LOWERING:
        from seesaw.codegen import lower

        return getattr(lower, name)
    raise AttributeError(f"module 'seesaw.codegen' has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION", "ExecutionPlan", "Instruction", "KVPlan", "LayoutSpec", "ModelInfo", "PhasePlan",
    "PredictionPlan", "ProcessGroup", "RankPlan", "SchedulePlan", "ShardSlice", "Summary",
    "build_execution_plan", "build_phase_plan", "check_plan", "config_from_plan", "plan_json_schema",
    "process_groups", "validate_plan_data", "validate_plan_file", "write_json_schema", "write_plan",
]
