"""What to run: validated protocols, sweeps and closed-loop policies (no I/O, no Ray).

The spec layer. It imports the Reservoir interface, the tasks and the readouts (to check
names and parameters), never the engine or the store.
"""
