"""Benchmarks of TrajViT2 and its peers, each a module run from the checkout's root: ``python -m benchmarks.NAME``
(usage in each module's docstring). Not part of the installed package."""
