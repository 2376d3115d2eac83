"""ovro_ingest: OVRO-LWA FITS images into one Zarr store (the domain logic, free of Prefect).

One module per pipeline step, each a plain function that tests call directly:

- :mod:`ovro_ingest.discover`: group input files into time steps
- :mod:`ovro_ingest.headers`: make files readable (fixed copies only when needed)
- :mod:`ovro_ingest.load`: open subbands lazily, read their header facts
- :mod:`ovro_ingest.combine`: one time step, frequency ascending
- :mod:`ovro_ingest.store`: append the time step to the Zarr store (the ledger)

plus :mod:`ovro_ingest.synth`, a generator of realistic synthetic data.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ovro-ingest")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
