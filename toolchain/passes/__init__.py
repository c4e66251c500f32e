"""Graph passes: small pure functions from a NIR graph to a new NIR graph.

fold_batchnorm   BatchNorm placeholders (from the exporter) folded into the preceding Linear/Conv
broadcast        neuron parameters expanded to one value per neuron, shapes recorded in the nodes
fold_pooling     SumPool/AvgPool folded into the following Conv2d or Flatten+Affine (netx has no pool layer)

The retiming pass lives in ``toolchain/passes/retime.py`` and quantization in ``toolchain/loihi/quantize.py``.
"""
