"""The peers: the tokenizers TrajTok is compared against, one module each, all returning ``TrajectoryTokens``.

On pixels, registered in ``trajtok.tokenizer.registry`` (so the contract tests and the benchmarks cover them):
``ViT3D`` (every tubelet a token), ``ToMe`` (token merging), ``RLT`` (run-length tokenization) and
``TokenLearner`` (fixed K), over the tubelets of ``tubelets.py``. On a frozen model's features (built with their
feature source, so not registered): ``FeaturePatches`` (linear and attentive probing) and ``PooledPatches``
(PatchVLM). ``trajtok.tokenizer`` re-exports every one, and configs name them by that path
(``trajtok.tokenizer.ViT3D``).
"""

from trajtok.tokenizer.peers.feature_patches import FeaturePatches
from trajtok.tokenizer.peers.pooled_patches import PooledPatches
from trajtok.tokenizer.peers.rlt import RLT
from trajtok.tokenizer.peers.token_learner import TokenLearner
from trajtok.tokenizer.peers.tome import ToMe
from trajtok.tokenizer.peers.vit3d import ViT3D

__all__ = ["RLT", "FeaturePatches", "PooledPatches", "ToMe", "TokenLearner", "ViT3D"]
