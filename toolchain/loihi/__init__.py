"""The Loihi target layer: bit widths, the layer plan, fixed-point types and quantization.
No module here imports Lava; the Lava backends in ``simulators/`` build processes from them."""
