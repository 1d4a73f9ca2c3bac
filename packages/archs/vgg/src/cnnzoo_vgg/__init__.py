"""VGG (Simonyan and Zisserman 2014): configurations A to E for cnnzoo."""
