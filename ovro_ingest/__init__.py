"""ovro_ingest: OVRO-LWA FITS images into one Zarr store (the domain logic, free of Prefect).

One module per pipeline step, each a plain function that tests call directly:

- :mod:`ovro_ingest.discover`: group input files into time steps
- :mod:`ovro_ingest.headers`: make files readable (fixed copies only when needed)
- :mod:`ovro_ingest.load`: open subbands lazily, read their header facts
- :mod:`ovro_ingest.combine`: one time step, frequency ascending
- :mod:`ovro_ingest.store` and :mod:`ovro_ingest.commit`: the Zarr store (the ledger),
  time steps staged in parallel and committed in order

plus :mod:`ovro_ingest.pipeline` (the steps chained without Prefect), :mod:`ovro_ingest.lock`,
:mod:`ovro_ingest.health` (validate, repair), :mod:`ovro_ingest.audit`, :mod:`ovro_ingest.sky`,
:mod:`ovro_ingest.quicklook` and :mod:`ovro_ingest.synth` (realistic synthetic data).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ovro-ingest")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
