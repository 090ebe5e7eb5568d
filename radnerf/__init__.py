"""radnerf: RAD-NeRF audio-driven talking portraits as a reproducible pipeline.

Imports are kept cheap: heavy dependencies (torch, mediapipe, transformers,
prefect, mlflow) load inside the functions that need them, so ``radnerf --help``
and test collection stay fast.
"""

__version__ = "0.1.0"
