"""nirdeploy toolchain: graph passes, discretization, retiming, data, metrics and the CLI.

The pipeline is a chain of artifacts, each produced by a function from the previous one:
checkpoint -> .nir -> retimed .nir -> Loihi network -> run record -> report.
"""

__version__ = "0.1.0"
