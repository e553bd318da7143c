"""The protocol of a coded layer as data: plans (tasks, keys, placement) built by pure functions.

- ``types`` — :class:`Plan`, :class:`Task`, :class:`Ref`: what an executor runs;
- ``plans`` — the planners of every operation (products, repairs, updates, encode, scrubs);
- ``keys`` — task keys that read well in the dashboard and are never reused;
- ``placement`` — which worker holds which coded block;
- ``reports`` — what an operation found, for the ledger and the dashboard.

No Dask, no I/O: ``codenet_dask.executors`` runs plans, ``codenet_dask.layer`` decides which.
"""
