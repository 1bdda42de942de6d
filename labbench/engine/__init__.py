"""How a run is carried out: Ray actors for devices and trainers, sweeps, closed loops, evaluation.

The engine layer. It reads specs (:mod:`labbench.spec`) and writes the store
(:mod:`labbench.store`); neither of those imports it.
"""
