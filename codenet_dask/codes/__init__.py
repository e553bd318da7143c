"""Real-valued error-correcting codes over blocks. Pure numpy/scipy: no Dask, no I/O.

- :class:`SystematicMDSCode` — a ``[k + p, k]`` systematic MDS code, certified well conditioned.
- :class:`ProductCode` — row code x column code on a block grid (CodeNet's layer layout).
- :class:`PolyDotCode` — Generalized PolyDot: W split m x n, one evaluation per worker, any K results decode.
- :class:`PolyDotLayer` — a pure-numpy reference of one GPD-coded layer (forward, backward, update).
- :func:`check_codeword` — detect / locate / classify wrong blocks from projections with rigorous
  roundoff thresholds; :func:`rebuild_blocks` — recompute positions from the good ones.
"""

from .decoder import CodewordCheck, check_codeword, rebuild_blocks
from .mds import MAX_CONDITION, SystematicMDSCode
from .polydot import ConditionCertificate, PolyDotCheck, PolyDotCode, PolyDotDecode, offered_splits, polydot_code
from .polydot_layer import PolyDotLayer
from .product import ProductCode, mds_code
from .roundoff import gamma, require_real_float, unit_roundoff

__all__ = [
    "MAX_CONDITION",
    "CodewordCheck",
    "ConditionCertificate",
    "PolyDotCheck",
    "PolyDotCode",
    "PolyDotDecode",
    "PolyDotLayer",
    "ProductCode",
    "SystematicMDSCode",
    "check_codeword",
    "gamma",
    "mds_code",
    "offered_splits",
    "polydot_code",
    "rebuild_blocks",
    "require_real_float",
    "unit_roundoff",
]
