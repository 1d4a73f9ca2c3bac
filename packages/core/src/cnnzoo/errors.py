"""Errors that tell the user what went wrong and what to do."""


class CnnzooError(Exception):
    """Base of every error cnnzoo raises on purpose."""


class ModelNotFoundError(CnnzooError, KeyError):
    """No registered model has that name."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class PluginError(CnnzooError, RuntimeError):
    """A plugin distribution is broken: it fails to import or clashes with another."""


class InputShapeError(CnnzooError, ValueError):
    """Images of a shape or channel count the model cannot take."""


class FeatureMapsError(CnnzooError, ValueError):
    """A model that cannot be cut into the feature maps asked for."""


class DatasetError(CnnzooError, FileNotFoundError):
    """A dataset that is missing, laid out wrongly or corrupt."""
