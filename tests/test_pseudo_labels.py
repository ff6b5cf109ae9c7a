"""The pseudo-labelling pipeline (``trajtok.pseudo_labels``): each stage on tiny models saved locally (the real
transformers code paths), the linking rule on hand-made masks, and the whole pipeline against the synthetic set's
exact labels with oracle parts (``pseudo_label_oracles``)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from builders import quiet_trainer
from pseudo_label_oracles import (
    OraclePropagator,
    OracleSegmenter,
    trajectory_maps,
    truth,
)

from datamodules import VideoTextDataModule
from datamodules.options import SyntheticOptions
from datamodules.pseudo_label_files import load_pseudo_labels
from datamodules.videos_to_label import PseudoLabelDataModule
from trajtok.files import PARTIAL
from trajtok.pseudo_labels import (
    ChunkLabels,
    Clip,
    DirectSAMSegmenter,
    FixedChunks,
    PseudoLabeller,
    PseudoLabelWriter,
    ShotCuts,
    VideoTracker,
    label_video,
    link_chunks,
    match_segments,
)
from trajtok.pseudo_labels.components import boundary_segments

SMALL = SyntheticOptions(train=16, val=8, test=8)


def boxes(*regions: tuple[int, int, int, int], size: int = 8) -> torch.Tensor:
    """A label map ``(size, size)``: region i (top, left, bottom, right) gets id i + 1."""
    out = torch.zeros(size, size, dtype=torch.long)
    for i, (top, left, bottom, right) in enumerate(regions):
        out[top:bottom, left:right] = i + 1
    return out


def volumes(masks: np.ndarray | torch.Tensor, graph: np.ndarray | torch.Tensor) -> set[bytes]:
    """Each trajectory as its pixels over time (a bool (T, H, W) volume), ids forgotten: graphs equal up to
    relabelling have equal sets."""
    maps = trajectory_maps(torch.as_tensor(masks).long(), torch.as_tensor(graph))
    return {(maps == m).numpy().tobytes() for m in range(1, len(graph) + 1)}


# ------------------------------------------------------------------------------------------------- linking


def test_a_split_continues_in_its_larger_part_and_the_smaller_starts_a_trajectory():
    a = boxes((0, 0, 8, 8))
    halves = boxes((0, 0, 8, 6), (0, 6, 8, 8))  # 48 / 16 pixels of A's 64
    masks, graph = link_chunks([ChunkLabels(a[None], carry=a), ChunkLabels(halves[None])])
    assert graph.tolist() == [[1, 1], [0, 2]]
    assert masks.dtype == torch.uint8 and masks.shape == (2, 8, 8)


def test_a_merge_continues_the_trajectory_it_overlaps_most_and_ends_the_other():
    two = boxes((0, 0, 8, 6), (0, 6, 8, 8))
    merged = boxes((0, 0, 8, 8))
    _, graph = link_chunks([ChunkLabels(two[None], carry=two), ChunkLabels(merged[None])])
    assert graph.tolist() == [[1, 1], [2, 0]]


def test_an_object_leaving_and_returning_is_tracked_within_a_chunk_and_restarts_across_one():
    obj, empty = boxes((2, 2, 6, 6)), torch.zeros(8, 8, dtype=torch.long)
    # Chunk 1 tracks it out of view and back (the propagator's memory); its carry onto chunk 2's key frame is
    # empty (gone again), so when it returns in chunk 3 nothing links it: a new trajectory.
    chunks = [ChunkLabels(torch.stack([obj, empty, obj]), carry=empty), ChunkLabels(empty[None], carry=empty),
              ChunkLabels(obj[None])]
    _, graph = link_chunks(chunks)
    assert graph.tolist() == [[1, 0, 1, 0, 0], [0, 0, 0, 0, 1]]


def test_nothing_links_across_a_shot_cut():
    a = boxes((0, 0, 8, 8))
    _, cut = link_chunks([ChunkLabels(a[None], carry=None), ChunkLabels(a[None])])  # the pipeline's cut: no carry
    assert cut.tolist() == [[1, 0], [0, 1]]
    new_shot = boxes((0, 0, 3, 3))  # with a carry, other content: IoU 9/64
    _, graph = link_chunks([ChunkLabels(a[None], carry=a), ChunkLabels(new_shot[None])])
    assert graph.tolist() == [[1, 0], [0, 1]]


def test_an_exact_half_tie_is_matched_once():
    a = boxes((0, 0, 8, 8))
    halves = boxes((0, 0, 8, 4), (0, 4, 8, 8))
    assert (match_segments(a, halves) > 0).sum() == 1
    assert match_segments(a, halves, threshold=0.51).tolist() == [0, 0, 0]


# --------------------------------------------------------------------------------------------- the stages


def test_boundary_segments_are_the_enclosed_regions_by_area_without_specks():
    prob = torch.zeros(1, 12, 12)
    prob[0, :, 4] = 1  # a vertical boundary: regions of 4 and 7 columns
    prob[0, 1:3, 8] = prob[0, 0, 7] = prob[0, 3, 7] = 1  # not closed: still one region
    prob[0, 9:12, 0:3] = 1
    prob[0, 10, 1] = 0  # a one-pixel speck inside a closed box: dropped (area <= 16)
    prob[0, 9:12, 3] = 1
    labels = boundary_segments(prob, min_area=16, dilation=0)[0]
    assert labels[0, 11] == 1 and labels[0, 0] == 2 and labels[10, 1] == 0 and labels[:, 4].eq(0).all()
    assert boundary_segments(prob, max_segments=1, dilation=0)[0].max() == 1
    grown = boundary_segments(prob, dilation=2)[0]
    assert grown[:, 4].gt(0).all()  # the boundary column is filled by a neighbour


def test_shot_cuts_find_a_cut_between_two_shots_and_none_in_a_smooth_pan():
    torch.manual_seed(0)
    scene_a = torch.randint(0, 80, (1, 32, 32, 3), dtype=torch.uint8).repeat(6, 1, 1, 1)
    scene_b = torch.randint(150, 255, (1, 32, 32, 3), dtype=torch.uint8).repeat(6, 1, 1, 1)
    chunks = ShotCuts()(torch.cat([scene_a, scene_b]))
    assert [(c.start, c.stop, c.cut) for c in chunks] == [(0, 6, False), (6, 12, True)]
    ramp = torch.linspace(0, 255, 40).round().to(torch.uint8)
    pan = torch.stack([ramp[t: t + 32].view(1, 32, 1).expand(32, 32, 3) for t in range(8)])
    assert [(c.start, c.stop) for c in ShotCuts()(pan)] == [(0, 8)]
    assert [(c.start, c.stop) for c in ShotCuts(max_chunk=3)(pan)] == [(0, 3), (3, 6), (6, 8)]
    assert [(c.start, c.stop) for c in FixedChunks()(pan)] == [(0, 2), (2, 4), (4, 6), (6, 8)]


@pytest.fixture(scope="module")
def tiny_directsam(tmp_path_factory) -> str:
    """A one-channel Segformer with its image processor, saved as DirectSAM is; its classifier outputs a constant
    boundary logit of -10 (all interior)."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation
    from transformers.models.segformer.image_processing_pil_segformer import (
        SegformerImageProcessorPil,
    )

    folder = tmp_path_factory.mktemp("directsam")
    config = SegformerConfig(num_labels=1, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                             num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16)
    model = SegformerForSemanticSegmentation(config)
    with torch.no_grad():
        model.decode_head.classifier.weight.zero_()
        model.decode_head.classifier.bias.fill_(-10.0)
    model.save_pretrained(folder)
    SegformerImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(folder)
    return str(folder)


def test_directsam_segmenter_loads_a_local_segformer_and_segments_key_frames(tiny_directsam):
    segmenter = DirectSAMSegmenter(tiny_directsam)
    frames = torch.randint(0, 255, (3, 40, 56, 3), dtype=torch.uint8)
    labels = segmenter(Clip(frames, "clip.mp4"), [0, 2])
    assert labels.shape == (2, 40, 56) and labels.dtype == torch.long
    assert labels.eq(1).all()  # no boundary anywhere: one segment, the whole frame
    with torch.no_grad():
        segmenter.model.decode_head.classifier.bias.fill_(10.0)
    assert segmenter(Clip(frames, "clip.mp4"), [1]).eq(0).all()  # all boundary: nothing
    with pytest.raises(ValueError, match="max_segments"):
        DirectSAMSegmenter(tiny_directsam, max_segments=300)


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory) -> str:
    """A Sam2VideoModel a few MB large at a 256 px input (the real architecture, shrunk), saved locally."""
    from transformers import Sam2VideoConfig, Sam2VideoModel

    size, width = 256, 128  # the memory attention expects feature widths of a multiple of its 64 memory channels
    backbone = {"model_type": "sam2_hiera_det_model", "hidden_size": 8, "blocks_per_stage": [1, 1, 2, 1],
                    "embed_dim_per_stage": [8, 16, 32, 64], "num_attention_heads_per_stage": [1, 1, 1, 1],
                    "window_size_per_stage": [4, 4, 4, 4], "global_attention_blocks": [3], "image_size": [size, size],
                    "window_positional_embedding_background_size": [2, 2]}
    config = Sam2VideoConfig(
        vision_config={"backbone_config": backbone, "backbone_channel_list": [64, 32, 16, 8], "fpn_hidden_size": width,
                           "backbone_feature_sizes": [[size // 4] * 2, [size // 8] * 2, [size // 16] * 2]},
        prompt_encoder_config={"hidden_size": width, "image_size": size, "patch_size": 16},
        mask_decoder_config={"hidden_size": width, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
        image_size=size, num_maskmem=3, memory_attention_hidden_size=width, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[size // 16] * 2,
        memory_encoder_hidden_size=width, mask_downsampler_embed_dim=width, memory_fuser_embed_dim=width,
        memory_fuser_intermediate_dim=64,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("sam2")
    Sam2VideoModel(config).save_pretrained(folder)
    return str(folder)


def test_video_tracker_propagates_every_key_segment_through_the_chunk(tiny_sam2):
    tracker = VideoTracker(tiny_sam2)
    frames = torch.randint(0, 255, (6, 40, 56, 3), dtype=torch.uint8)
    key = boxes((0, 0, 20, 20), (20, 20, 40, 40), (0, 40, 10, 56), size=56)[:40]
    out = tracker(Clip(frames, "clip.mp4"), 1, 5, key)
    assert out.shape == (4, 40, 56) and out.dtype == torch.long
    assert set(out.unique().tolist()) <= {0, 1, 2, 3}
    assert (out[0] == key).float().mean() > 0.9  # on the key frame the prompt comes back (untrained model)
    assert tracker(Clip(frames, "clip.mp4"), 0, 3, torch.zeros(40, 56, dtype=torch.long)).eq(0).all()


def test_the_tiny_models_label_a_video_end_to_end(tiny_directsam, tiny_sam2):
    frames = torch.randint(0, 255, (7, 40, 56, 3), dtype=torch.uint8)
    masks, graph, chunks = label_video(Clip(frames, "clip.mp4"), DirectSAMSegmenter(tiny_directsam),
                                       VideoTracker(tiny_sam2), FixedChunks(3))
    assert chunks == 3 and masks.shape == (7, 40, 56) and masks.dtype == torch.uint8
    assert graph.shape[1] == 7 and graph.shape[0] >= 1
    assert (masks[0] == 1).all() and graph[:, 0].tolist().count(1) == 1  # key frame 0: the one whole-frame segment


# ------------------------------------------------------------------------------------- synthetic truth


@pytest.fixture(scope="module")
def synthetic_clips(cache) -> list[str]:
    data = VideoTextDataModule(synthetic=SyntheticOptions(cache_dir=str(cache), train=16, val=8, test=8))
    data.setup("test")
    return [r.video for r in data.datasets["test"].records]


def decoded(path: str) -> Clip:
    from datamodules.video import read_all_frames

    return Clip(read_all_frames(path), path)


@pytest.mark.parametrize("every", [16, 4, 1])
def test_oracle_parts_reproduce_the_synthetic_trajectories(synthetic_clips, every):
    """One chunk, quarters, or a key frame per frame: wherever every true trajectory is visible at each key frame
    of its life, the labels are the truth up to ids; elsewhere trajectories only split (at a key frame where an
    object is hidden), never merge or err."""
    exact = 0
    for path in synthetic_clips:
        masks, graph, _ = label_video(decoded(path), OracleSegmenter(), OraclePropagator(), FixedChunks(every))
        true_masks, true_graph = truth(path)
        keys = list(range(0, true_masks.shape[0], every))
        first = (true_graph > 0).long().argmax(1)
        last = true_masks.shape[0] - 1 - (true_graph > 0).flip(1).long().argmax(1)
        hidden_at_a_key = any(bool((true_graph[m, k] == 0) & (first[m] <= k) & (k <= last[m]))
                              for m in range(len(true_graph)) for k in keys) or bool((first > 0).any() & (every > 1))
        if not hidden_at_a_key:
            assert volumes(masks, graph) == volumes(true_masks, true_graph), path
            exact += 1
        ours = trajectory_maps(masks.long(), graph)
        theirs = trajectory_maps(true_masks, true_graph)
        for m in range(1, len(graph) + 1):  # each labelled trajectory lies inside one true trajectory
            assert len(theirs[ours == m].unique()) == 1, path
    assert exact >= len(synthetic_clips) // 2


# ------------------------------------------------------------------------- predict loop, files, resuming


def oracle_labeller() -> PseudoLabeller:
    return PseudoLabeller(OracleSegmenter(), OraclePropagator(), FixedChunks(4))


def predict(data: PseudoLabelDataModule, writer: PseudoLabelWriter | None = None) -> PseudoLabelWriter:
    writer = writer or PseudoLabelWriter(visualize=1)
    trainer = quiet_trainer(devices=1, callbacks=[writer])
    trainer.predict(oracle_labeller(), datamodule=data)
    return writer


def test_the_writer_writes_readable_labels_annotations_and_statistics_and_a_rerun_resumes(cache, tmp_path):
    out = tmp_path / "labels"
    source = VideoTextDataModule(synthetic=SyntheticOptions(cache_dir=str(cache), **{k: getattr(SMALL, k) for k in ("train", "val", "test")}))
    writer = predict(PseudoLabelDataModule(str(out), source=source, split="test"))
    assert writer.counts == {"labelled": 8, "done": 0, "failed": 0}
    rows = [json.loads(line) for line in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["caption"] and r["mask"].endswith("_mask.npz") for r in rows)
    masks, graph, _ = load_pseudo_labels(str(out / rows[0]["mask"]), str(out / rows[0]["graph"]))
    true_masks, _ = truth(str((out / rows[0]["video"]).resolve()))
    assert masks.shape == tuple(true_masks.shape) and graph.shape[1] == masks.shape[0]
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 8 and all(r["status"] == "labelled" and float(r["labelled_fraction"]) == 1.0 for r in summary)
    assert len(list((out / "visualize").rglob("*_sheet.png"))) == 1
    assert not list(out.rglob(f"*{PARTIAL}*"))
    (out / rows[0]["graph"]).unlink()  # as if a run stopped between a video's two files
    again = predict(PseudoLabelDataModule(str(out), source=source, split="test"))
    assert again.counts == {"labelled": 1, "done": 7, "failed": 0}
    assert len((out / "pseudo_labels.jsonl").read_text().splitlines()) == 8


def test_an_unreadable_video_is_reported_and_the_others_labelled(synthetic_clips, tmp_path):
    import shutil

    folder = tmp_path / "videos"
    folder.mkdir()
    for path in synthetic_clips[:2]:
        shutil.copy(path, folder)
        for suffix in ("_mask.npz", "_graph.npz"):  # the oracles read the truth beside the video
            shutil.copy(path[:-4] + suffix, folder)
    (folder / "broken.mp4").write_bytes(b"not a video")
    writer = predict(PseudoLabelDataModule(str(tmp_path / "labels"), folder=str(folder)))
    assert writer.counts == {"labelled": 2, "done": 0, "failed": 1}
    with open(tmp_path / "labels" / "summary.csv") as f:
        failed = [r for r in csv.DictReader(f) if r["status"] == "failed"]
    assert [r["name"] for r in failed] == ["broken"] and failed[0]["reason"]
    with pytest.raises(ValueError, match="exactly one"):
        PseudoLabelDataModule(str(tmp_path), folder=str(folder), source=VideoTextDataModule())
