"""ResNet (He et al. 2015) and pre-activation ResNet (He et al. 2016) for cnnzoo."""
