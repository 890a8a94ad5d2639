"""JSON on stdout for the commands' ``--json`` options: strict JSON (no NaN), whatever the figures hold."""
from __future__ import annotations

import json
import math


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def json_text(data) -> str:
    """``data`` as strict JSON, indented: NaN and infinities (Kendall's tau of one layout, a standard error
    the fit could not bound) become null, objects JSON cannot hold become strings."""
    return json.dumps(_finite(json.loads(json.dumps(data, default=str))), indent=2, allow_nan=False)
