"""andchain: a bank's platform for its clients' digital-asset business."""

__version__ = "0.1.0"
