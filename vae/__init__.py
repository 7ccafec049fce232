"""vae: train, evaluate and visualise Variational Autoencoders on images."""

import gc
import sys

if sys.argv[:1] == ["-m"]:
    # `python -m vae.<command>` is starting: Python sets argv[0] to "-m" while it locates the
    # module. The command's imports (torch, Lightning, Hydra, matplotlib) make ~500k objects
    # that live to the end, and the collector scanned them all six times over while they
    # were made: 0.7-0.9 s of a 3.6 s start-up. vae.entry.run_then_exit freezes them and turns
    # collection back on before the command runs.
    gc.disable()
