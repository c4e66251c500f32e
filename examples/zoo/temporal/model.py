"""The demo model; its definition lives in the package (toolchain/demo_model/model.py) so that an
installed nirdeploy runs ``nirdeploy demo`` without a checkout. Re-exported here for the training
script and the zoo."""

from toolchain.demo_model.model import REFERENCE_DT, build_model, predict, readout, run_layerwise, run_over_time

__all__ = ["REFERENCE_DT", "build_model", "predict", "readout", "run_layerwise", "run_over_time"]
