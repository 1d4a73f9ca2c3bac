"""DenseNet (Huang et al. 2017) for cnnzoo."""
