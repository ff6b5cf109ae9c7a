"""Training batches from one source, or from several at once (joint image + video training)."""

from __future__ import annotations

from typing import Any


def batch_sources(batch: Any) -> dict[str, Any]:
    """The batches of the data contract in a training batch, by source name: a joint batch
    (``datamodules.JointDataModule``: ``{"video": batch, "image": batch}``, every value a dict) as it is, any
    other batch as ``{"": batch}``. A contract batch never holds a dict as a value, so the two cannot be
    confused."""
    if isinstance(batch, dict) and batch and all(isinstance(value, dict) for value in batch.values()):
        return batch
    return {"": batch}
