"""Runs and their lifecycle, one idea a module (import from the submodules):

- :mod:`streams.runs.run`: a :class:`~streams.runs.run.Run`, its state machine and its
  producers' records; run ids; the ``stream.gap`` event.
- :mod:`streams.runs.limits`: :class:`~streams.runs.limits.RunLimits`, the engine-wide
  settings.
- :mod:`streams.runs.manager`: :class:`~streams.runs.manager.RunManager`, which starts,
  finds, cancels and expires runs, each in a supervisor task it owns.
- :mod:`streams.runs.agent`: :class:`~streams.runs.agent.RunWorker`, what a run does: the
  agent loop (model step, tool calls, model step …) or a parallel run.
- :mod:`streams.runs.producers`: :class:`~streams.runs.producers.Producers`, the run's
  producers: a model step, a tool call, a client tool call.
- :mod:`streams.runs.failures`: how an exception is described in an event.
"""

__all__ = []
