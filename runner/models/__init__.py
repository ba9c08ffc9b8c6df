"""Models: functions images -> logits that create their variables with get_variable. Each module registers in
MODELS."""
import importlib
import pkgutil

from runner.registry import Registry

MODELS: Registry = Registry("model")

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
