"""Squeeze-and-Excitation networks (Hu et al. 2018) for cnnzoo."""
