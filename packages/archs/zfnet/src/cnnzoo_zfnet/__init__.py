"""ZFNet (Zeiler and Fergus 2013) for cnnzoo: the model of Fig. 3, with its pooling switches."""

from cnnzoo_zfnet.zfnet import PoolingSwitches, SwitchedFeatures, ZFLayer, ZFNet, zfnet

__all__ = ["PoolingSwitches", "SwitchedFeatures", "ZFLayer", "ZFNet", "zfnet"]
