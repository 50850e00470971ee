"""The steps of a run, one module per part of the guide, as functions of :class:`state.RunState`.

``tlzoo.engine.runner.Run`` holds the state and runs these through the ``tlzoo_run_step`` hook.
"""
