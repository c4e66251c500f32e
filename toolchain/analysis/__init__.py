"""The analysis layer: run records and comparisons (``records``), activity metrics (``metrics``),
chip resources (``resources``), energy models (``energy``) and segmentation scoring
(``segmentation``)."""
