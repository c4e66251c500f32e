"""The passes layer: small pure functions from a NIR graph to a new NIR graph, registered by
name (``toolchain.passes.registry``: ``PASSES``, ``PIPELINES``, ``run_pipeline``).

fold_batchnorm    BatchNorm placeholders (from the exporter) folded into the preceding Linear/Conv
broadcast_params  neuron parameters expanded to one value per neuron, shapes recorded in the nodes
fold_pooling      SumPool/AvgPool folded into the following Conv2d or Flatten+Affine (netx has no pool layer)
retime            zero-shot re-discretization for another timestep (``toolchain/passes/retime.py``)

Quantization for Loihi is not a graph pass: it lives in ``toolchain/loihi/quantize.py``.
"""
