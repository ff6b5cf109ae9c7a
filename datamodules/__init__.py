"""Data: video decoding, sampling, transforms, annotation reading, and the datamodules.

Nothing here knows a model. Models and data meet in the batch, a dict with these keys:

- ``video``: float32 ``(B, T, 3, H, W)``, normalised with the ImageNet mean/std; images are ``T = 1``.
- ``text``: ``list[str]`` of length B, one caption per clip (a random one of its captions in training,
  the first in evaluation).
- ``captions``: ``list[list[str]]``, all captions of each clip (retrieval evaluation ranks every one).
- ``index``: long ``(B,)``, the sample's index in its data set; distributed samplers repeat samples to
  even out ranks, and evaluation de-duplicates by this index.
- ``label``: long ``(B,)``, optional: the class of each clip for classification data.
"""
