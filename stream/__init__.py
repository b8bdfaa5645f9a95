"""profilestream's runtime: event schema, settings, the Faust worker, sinks and lookups.

Nothing under this package may import torch: stream workers run on onnxruntime alone.
"""

__version__ = "0.1.0"
