"""Faster R-CNN on any registered cnnzoo backbone."""
