"""Models: functions images -> logits that create their variables with get_variable. Each module registers in
MODELS."""
from runner.core.registry import Registry, import_modules

MODELS: Registry = Registry("model")
import_modules(__name__, __path__)
