"""What the trainers share: where a tower's ops and the variables go."""
from __future__ import annotations

_VARIABLE_OPS = {"Variable", "VariableV2", "VarHandleOp", "AutoReloadVariable"}


def pin_variables(variable_device: str, device: str):
    """A device function: variables on the variable device, every other op on the tower's device, but for ops
    placed on another task inside it (SyncReplicasOptimizer puts its gradient accumulators and token queue with
    the global step, on a ps task)."""

    def place(op):
        if op.type in _VARIABLE_OPS:
            return variable_device
        if "/job:" in op.device and not device.startswith(op.device.split("/device:")[0]):
            return op.device
        return device

    return place
