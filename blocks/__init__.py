"""Prefect Blocks holding the ingest settings (input root, store, fixed-file dir, chunking, codec, Dask address).

Not written yet: the block that deployments load arrives with the operations work
(issue 5). Until then the flow takes every setting as a parameter.
"""
