"""The timm bridge: timm models in the cnnzoo registry, cnnzoo models in timm's."""
