"""``python -m ovro_ingest``: the ``ovro-ingest`` command, for environments where its console script is not reachable.

(ovro-lwa-portal installs a console script of the same name: installed together, the one
installed last is ``ovro-ingest`` on the PATH; ``python -m ovro_ingest`` is always this one.)
The command lives in ``flows.cli``; the domain package only hands over to it when run.
"""

if __name__ == "__main__":
    import importlib

    # by name: the domain package does not depend on the CLI above it (nor does its type check follow it there)
    importlib.import_module("flows.cli").app(prog_name="ovro-ingest")
