"""Propagating a key frame's segments through a chunk with a SAM 2 family video model.

``VideoTracker`` loads any transformers video tracker of that family by hub id or local folder through
``AutoModel`` (``Sam2VideoModel``: ``facebook/sam2.1-hiera-small``; ``EdgeTamVideoModel``: ``yonigozlan/EdgeTAM-hf``,
whose backbone needs timm) and prompts it with every segment's mask at once on the chunk's first frame (the
model batches over objects), then keeps each pixel's most confident object.

The preprocessing and post-processing of ``Sam2VideoProcessor`` are done here in torch: that processor is
built on torchvision, which cannot be installed beside the pinned CPU torch. They are its documented steps:
frames resized (bilinear) to the model's square input and normalised with the ImageNet mean / std; a mask
prompt resized (bilinear, antialiased) to the input and binarised at 0.5; the predicted logits resized
(bilinear) back to the frame.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
from torch import nn

from trajtok.hf import load_kwargs
from trajtok.pseudo_labels.loading import loading, model_source
from trajtok.pseudo_labels.pipeline import Clip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The option that names the propagator's model in ``configs/pseudo_labels.yaml``.
MODEL_OPTION = "model.propagator.init_args.model"


class VideoTracker(nn.Module):
    """Segments of a key frame followed through a chunk by a SAM 2 / EdgeTAM video model.

    Args:
        model: hub id or local folder of a ``Sam2VideoModel`` or ``EdgeTamVideoModel``.
        dtype: the tracking session's dtype ("float32"; "bfloat16" on GPUs that support it).
        offload_video: keep the preprocessed frames in CPU memory (a 3 x 1024 x 1024 float32 tensor a frame at
            1024 px) rather than on the accelerator.
    """

    def __init__(self, model: str = "facebook/sam2.1-hiera-small", dtype: str = "float32",
                 offload_video: bool = True) -> None:
        from transformers import AutoModel

        super().__init__()
        path = model_source(model, MODEL_OPTION)
        with loading(model, MODEL_OPTION):
            self.model = AutoModel.from_pretrained(path, **load_kwargs(path)).eval()
        name = type(self.model).__name__
        session = name.replace("Model", "InferenceSession")
        self.session_class = getattr(importlib.import_module(type(self.model).__module__), session, None)
        if self.session_class is None or not hasattr(self.model, "propagate_in_video_iterator"):
            raise ValueError(f"{MODEL_OPTION}={model}: {name} is not a SAM 2 family video model (no {session})")
        self.dtype_name = dtype
        self.offload_video = offload_video
        size = self.model.config.image_size
        self.size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Uint8 ``(L, H, W, 3)`` frames as the model's normalised float ``(L, 3, S, S)`` input."""
        x = frames.permute(0, 3, 1, 2).float() / 255
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        mean = x.new_tensor(IMAGENET_MEAN)[:, None, None]
        std = x.new_tensor(IMAGENET_STD)[:, None, None]
        return (x - mean) / std

    @torch.no_grad()
    def forward(self, clip: Clip, start: int, stop: int, key: torch.Tensor) -> torch.Tensor:
        height, width = key.shape
        ids = key.unique()
        ids = ids[ids > 0]
        out = torch.zeros(stop - start, height, width, dtype=torch.long, device=key.device)
        if len(ids) == 0:
            return out
        dtype = getattr(torch, self.dtype_name)
        device = next(self.model.parameters()).device
        session = self.session_class(
            video=self.preprocess(clip.frames[start:stop].to(device)), video_height=height, video_width=width,
            inference_device=device, video_storage_device="cpu" if self.offload_video else device, dtype=dtype)
        prompts = (key[None] == ids[:, None, None]).float()[:, None]
        prompts = F.interpolate(prompts.to(device), size=self.size, mode="bilinear", align_corners=False, antialias=True)
        for k, prompt in zip(ids.tolist(), (prompts >= 0.5).float()):
            session.add_mask_inputs(session.obj_id_to_idx(k), 0, prompt[None])
        session.obj_with_new_inputs = ids.tolist()
        for output in self.model.propagate_in_video_iterator(session, start_frame_idx=0):
            logits = F.interpolate(output.pred_masks.float(), size=(height, width), mode="bilinear", align_corners=False)
            best, index = logits[:, 0].max(0)
            object_ids = torch.as_tensor(output.object_ids or session.obj_ids, device=index.device)
            out[output.frame_idx] = torch.where(best > 0, object_ids[index], 0).to(out.device)
        return out
