"""Workloads: request-length traces for the planner (DESIGN.md section 6)."""
from seesaw.planner.workload.trace import Workload, load_workload, shipped_trace_path

__all__ = ["Workload", "load_workload", "shipped_trace_path"]
