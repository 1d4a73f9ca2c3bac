"""Seeing inside cnnzoo models."""
