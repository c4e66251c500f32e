"""Exporters: PyTorch (torch layers, norse cells) -> NIR, and NIR -> Lava netx HDF5."""
