"""Prefect Blocks of the ingest: the settings an operator saves once and the deployments load.

Register the block type with ``prefect block register -m blocks``; save one with
``IngestSettings(input_root=..., store=...).save("nightly")`` or
``deployments/stand-up``.
"""

from blocks.ingest_settings import IngestSettings

__all__ = ["IngestSettings"]
