"""ShuffleNet (Zhang et al. 2017) and ShuffleNet-v2 (Ma et al. 2018) for cnnzoo."""
