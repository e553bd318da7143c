"""The plans of coded-layer operations as plain data: tasks, keys, placement, reports (no Dask, no I/O)."""
