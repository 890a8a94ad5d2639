"""Hardware description for the planner: the GPU catalog and the cluster (with its communication model).

See DESIGN.md sections 4 (cost model facts) and 5 (hardware figures).
"""
from seesaw.planner.hardware.catalog import (
    CATALOG_PATH,
    SOURCE_GROUPS,
    GPUSpec,
    get_gpu,
    load_catalog,
)
from seesaw.planner.hardware.cluster import Cluster, build_cluster, load_cluster

__all__ = [
    "CATALOG_PATH",
    "SOURCE_GROUPS",
    "Cluster",
    "GPUSpec",
    "build_cluster",
    "get_gpu",
    "load_catalog",
    "load_cluster",
]
