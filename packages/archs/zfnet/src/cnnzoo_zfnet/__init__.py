"""ZFNet (Zeiler and Fergus 2013) for cnnzoo."""
