"""The scheduling policy shared by the runtime and the planner's simulator (no torch, no processes).

``seesaw.schedule`` sits beside ``seesaw.ir`` at the bottom of the dependency order: the runtime drives it
with real forward passes, the planner's simulator with the cost model's step times, so both make the same
decisions on the same requests.
"""
from seesaw.schedule.allocators import BufferAllocator, PageAllocator
from seesaw.schedule.batch import ForwardBatch, SamplingParams
from seesaw.schedule.replica import Action, Policy, ReplicaScheduler, Sequence

__all__ = ["Action", "BufferAllocator", "ForwardBatch", "PageAllocator", "Policy", "ReplicaScheduler", "SamplingParams",
           "Sequence"]
