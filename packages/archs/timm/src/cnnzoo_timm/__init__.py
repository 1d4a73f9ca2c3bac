"""The timm bridge: timm models in the cnnzoo registry, cnnzoo models in timm's.

- `cnnzoo.create_model("timm/resnet18", num_classes=10)`: any timm model, speaking cnnzoo's
  protocol, so the trainer, the reproduction harness and the detection app take it as they
  take ours (`cnnzoo_timm.namespace`).
- `import cnnzoo_timm; timm.create_model("cnnzoo_resnet20", num_classes=10)`: any cnnzoo
  model in timm (`cnnzoo_timm.in_timm`).
"""

from cnnzoo_timm.classifier import TimmClassifier, from_timm_state_dict
from cnnzoo_timm.in_timm import pretrained_cfg_of, register_in_timm
from cnnzoo_timm.namespace import TimmNamespace, namespace, timm_card

__all__ = [
    "TimmClassifier",
    "TimmNamespace",
    "from_timm_state_dict",
    "namespace",
    "pretrained_cfg_of",
    "register_in_timm",
    "timm_card",
]

register_in_timm()
