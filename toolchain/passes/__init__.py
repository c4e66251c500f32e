"""Graph passes: small pure functions from a NIR graph to a new NIR graph.

fold_batchnorm   BatchNorm placeholders (from the exporter) folded into the preceding Linear/Conv
broadcast        neuron parameters expanded to one value per neuron
"""
