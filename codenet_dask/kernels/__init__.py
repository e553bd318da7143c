"""What runs on a worker: pure numpy functions over coded blocks, each output through the fault hook.

- ``blocks`` — a coded block with its roundoff bookkeeping, and the rank-B update;
- ``checks`` — projections with rigorous roundoff bounds, codeword checks, acceptance;
- ``shards`` — one task per worker and step: products, summaries, decode, verify, repair, update;
- ``encode`` — systematic and parity blocks, replicas, operand copies;
- ``grid`` — the product-code decoder of a stored grid (scrub), ``scrub`` its worker side;
- ``blockwise`` — the one-task-per-block product of ``codenet_dask.matmul``.
"""
