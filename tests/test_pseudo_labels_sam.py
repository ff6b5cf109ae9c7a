"""SAM's automatic mask generation as a key-frame segmenter (``SAMEverythingSegmenter``): its post-processing steps
(``mask_generation``) on hand-made boxes and masks, and the segmenter on a tiny ``SamModel`` saved locally (the real
transformers code path) whose decoder is set to give known masks, alone, in ``label_video`` and through
``trajtok pseudo-label``'s config by class_path."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ROOT
from pseudo_label_oracles import OraclePropagator

from trajtok.pseudo_labels import Clip, FixedChunks, SAMEverythingSegmenter, label_video
from trajtok.pseudo_labels.mask_generation import (
    box_iou,
    box_nms,
    masks_to_boxes,
    panoptic_ids,
    point_grid,
    stability_score,
)


def test_box_nms_keeps_what_greedy_suppression_keeps_by_hand():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 1, 10, 11], [0, 2, 10, 12], [20, 20, 25, 25], [0, 0, 10, 10]]).float()
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.85])
    iou = box_iou(boxes, boxes)
    # By hand: A-B and B-C overlap 90 of 110 (0.818 > 0.7), A-C 80 of 120 (0.667), E duplicates A.
    assert iou[0, 1].item() == pytest.approx(90 / 110) and iou[0, 2].item() == pytest.approx(80 / 120)
    assert iou[0, 4] == 1 and iou[0, 3] == 0
    # Greedy: A kept; E (0.85) and B (0.8) suppressed by A; C kept, since the only box over 0.7 with it (B) is gone;
    # D kept. Suppressing by any higher-scored box, kept or not, would wrongly drop C.
    assert box_nms(boxes, scores, 0.7).tolist() == [0, 2, 3]
    assert box_nms(boxes, scores, 1.0).tolist() == [0, 4, 1, 2, 3]
    assert box_nms(boxes[:0], scores[:0], 0.7).tolist() == []


def test_boxes_stability_and_grid_follow_sam():
    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4, 7] = True
    assert masks_to_boxes(masks).tolist() == [[2, 1, 4, 2], [7, 4, 7, 4], [0, 0, 0, 0]]
    logits = torch.tensor([[[2.0, 2.0, 0.5, -2.0]], [[0.5, 0.5, -0.5, -3.0]]])
    assert stability_score(logits, 0.0, 1.0).tolist() == [pytest.approx(2 / 3), 0.0]  # 2 of 3; nothing above 1
    assert point_grid(2).tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]


def test_panoptic_ids_paint_smaller_masks_over_larger_and_number_by_visible_area():
    whole = torch.ones(8, 8, dtype=torch.bool)
    part = torch.zeros(8, 8, dtype=torch.bool)
    part[:, :3] = True  # 24 pixels inside the whole, which keeps the other 40
    speck = torch.zeros(8, 8, dtype=torch.bool)
    speck[7, 7] = True
    ids = panoptic_ids(torch.stack([speck, part, whole]), min_area=2, max_segments=10)
    assert ids[:, :3].eq(2).all() and ids[:, 3:].eq(1).all()  # the speck is dropped and leaves no hole
    assert panoptic_ids(torch.stack([part, whole]), min_area=2, max_segments=1).eq(torch.where(~part, 1, 0)).all()
    assert panoptic_ids(whole[None, :0], 0, 5).eq(0).all()


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> str:
    """A SamModel of 128 px input (8 x 8 embeddings, 32 x 32 masks) with its image processor, saved locally. Its
    decoder is set so every prompt gives the same three masks: the whole frame with predicted IoU 5 (kept), the
    whole frame with predicted IoU 0.5 (below pred_iou_thresh) and a mask of logit 0.5 everywhere with IoU 5
    (present at threshold 0, gone at +1: stability 0)."""
    from transformers import SamConfig, SamModel
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    size, width = 128, 32
    config = SamConfig(
        vision_config={"hidden_size": 32, "output_channels": width, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": size, "window_size": 4, "global_attn_indexes": [1], "num_pos_feats": 16,
                       "mlp_dim": 64},
        prompt_encoder_config={"hidden_size": width, "image_size": size, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": width, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 16})
    torch.manual_seed(0)
    model = SamModel(config)
    decoder = model.mask_decoder
    with torch.no_grad():
        decoder.upscale_conv2.weight.zero_()
        decoder.upscale_conv2.bias.fill_(1.0)  # every upscaled channel is GELU(1) = 0.841 everywhere
        channels = decoder.upscale_conv2.out_channels
        for token, logit in enumerate([0.0, 10.0, 10.0, 0.5]):  # token 0 is the single-mask output
            mlp = decoder.output_hypernetworks_mlps[token]
            mlp.proj_out.weight.zero_()
            mlp.proj_out.bias.fill_(logit / (0.8413 * channels))
        decoder.iou_prediction_head.proj_out.weight.zero_()
        decoder.iou_prediction_head.proj_out.bias.copy_(torch.tensor([0.0, 5.0, 0.5, 5.0]))
    folder = tmp_path_factory.mktemp("sam")
    model.save_pretrained(folder)
    SamImageProcessorPil(size={"longest_edge": size}, pad_size={"height": size, "width": size}).save_pretrained(folder)
    return str(folder)


def test_sam_everything_segmenter_filters_deduplicates_and_paints(tiny_sam):
    segmenter = SAMEverythingSegmenter(tiny_sam, points_per_side=4, points_per_batch=5)
    frames = torch.randint(0, 255, (3, 40, 56, 3), dtype=torch.uint8)
    masks, scores = segmenter.candidates(frames[0])
    # 16 prompts x 3 masks: the IoU filter drops 16, the stability filter 16; 16 identical whole frames remain.
    assert masks.shape == (16, 40, 56) and masks.all() and torch.allclose(scores, torch.full((16,), 5.0))
    assert len(box_nms(masks_to_boxes(masks), scores, 0.7)) == 1  # the duplicates go
    labels = segmenter(Clip(frames, "clip.mp4"), [0, 2])
    assert labels.shape == (2, 40, 56) and labels.dtype == torch.long and labels.eq(1).all()
    strict = SAMEverythingSegmenter(tiny_sam, points_per_side=2, pred_iou_thresh=6.0)
    assert strict(Clip(frames, "clip.mp4"), [1]).eq(0).all()  # nothing passes: all unlabelled
    with pytest.raises(ValueError, match="max_segments"):
        SAMEverythingSegmenter(tiny_sam, max_segments=256)


def test_sam_everything_segmenter_labels_a_video_and_runs_the_pseudo_label_command_by_class_path(
        tiny_sam, cache, tmp_path, monkeypatch):
    from datamodules import VideoTextDataModule
    from datamodules.options import SyntheticOptions
    from datamodules.video import read_all_frames
    from trajtok.cli import main

    segmenter = SAMEverythingSegmenter(tiny_sam, points_per_side=2)
    data = VideoTextDataModule(synthetic=SyntheticOptions(cache_dir=str(cache), train=16, val=8, test=8))
    data.setup("test")
    video = data.datasets["test"].records[0].video
    masks, graph, chunks = label_video(Clip(read_all_frames(video), video), segmenter, OraclePropagator(), FixedChunks(4))
    assert chunks == 4 and masks[0].eq(1).all() and graph[:, 0].tolist().count(1) == 1

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAJTOK_CACHE", str(cache))
    main(["pseudo-label", "--config", str(ROOT / "configs/pseudo_labels.yaml"),
          "--model.segmenter=trajtok.pseudo_labels.SAMEverythingSegmenter",
          f"--model.segmenter.init_args.model={tiny_sam}", "--model.segmenter.init_args.points_per_side=2",
          "--model.propagator=pseudo_label_oracles.OraclePropagator", "--model.chunker=trajtok.pseudo_labels.FixedChunks",
          "--data.source.init_args.synthetic.train=16", "--data.source.init_args.synthetic.val=8",
          "--data.source.init_args.synthetic.test=8", "--data.split=test", "--data.out_dir=labels",
          "--data.num_workers=0", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
          "--trainer.callbacks=[{class_path: trajtok.pseudo_labels.PseudoLabelWriter}]"])
    rows = [json.loads(line) for line in (tmp_path / "labels/pseudo_labels.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all((tmp_path / "labels" / r["mask"]).is_file() for r in rows)
