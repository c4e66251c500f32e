"""The research model zoo: one package per family (model, training, evaluation, shipped checkpoint)."""
