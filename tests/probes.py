"""Real tools registered by tests, which record what the engine did to them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.builtin.tools import builtin_tools
from streams.tools import Emit, Tool, ToolRegistry


@dataclass
class ProbeRecord:
    """What the probe tool saw, shared between the server's thread and the test's."""

    running: int = 0
    peak: int = 0
    started: int = 0
    cancelled: int = 0
    cleaned_up: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    started_event: threading.Event = field(default_factory=threading.Event)


def probe_tool(record: ProbeRecord) -> Tool:
    async def probe(arguments: Mapping[str, Any], emit: Emit) -> Any:
        """Stream ``ticks`` deltas ``interval`` apart, counting how many probes run at once."""
        with record._lock:
            record.running += 1
            record.started += 1
            record.peak = max(record.peak, record.running)
        record.started_event.set()
        try:
            for tick in range(int(arguments.get("ticks", 3))):
                await emit(f"{arguments.get('label', 'probe')}:{tick}\n")
                await asyncio.sleep(float(arguments.get("interval", 0.02)))
            return {"ticks": int(arguments.get("ticks", 3))}
        except asyncio.CancelledError:
            with record._lock:
                record.cancelled += 1
            raise
        finally:
            with record._lock:
                record.running -= 1
                record.cleaned_up += 1

    return Tool(
        "probe",
        "Test probe: streams ticks and records concurrency and cancellation.",
        {"type": "object", "properties": {"ticks": {"type": "integer"}}},
        probe,
    )


def tools_with_probe(record: ProbeRecord) -> ToolRegistry:
    registry = builtin_tools(countdown_interval=0.01)
    registry.register(probe_tool(record))
    return registry
