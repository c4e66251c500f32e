"""The reports layer: terminal tables (``console``), HTML/Markdown reports (``report``) and
time-resolution sweeps (``sweep``)."""
