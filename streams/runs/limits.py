"""The engine-wide settings for runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.approvals import ApprovalPolicy
from streams.log import Retention

__all__ = ["RunLimits"]


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Engine-wide settings for runs."""

    max_active_runs: int = 1000
    tool_timeout: float = 60.0
    client_tool_timeout: float = 120.0
    retention: Retention = field(default_factory=Retention)
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    # What one model step may produce; past it the step fails (ModelOutputLimitError).
    max_tool_calls_per_step: int = 64
    max_step_text_bytes: int = 1024 * 1024
    max_tool_arguments_bytes: int = 64 * 1024
