"""MnasNet (Tan et al. 2019) for cnnzoo."""
