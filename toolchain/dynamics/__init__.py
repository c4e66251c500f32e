"""The dynamics layer: NIR neurons as discrete state-space models (``discretize``), the retiming
matrix functions (``retiming``) and Loihi's CUBA form with its projection (``cuba``)."""
