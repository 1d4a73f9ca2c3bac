"""Network in Network (Lin, Chen and Yan 2013) for cnnzoo."""
