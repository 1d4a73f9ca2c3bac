"""GoogLeNet and the Inception line (Szegedy et al. 2014-2016, Ioffe and Szegedy 2015) for cnnzoo."""
