"""Readers of public data sets' official files (MSR-VTT, DiDeMo, ActivityNet Captions, VATEX, Kinetics, SSv2:
``datamodules.public_sets``), their registry and datamodules (``datamodules.public_data``), and the retrieval / zero-shot protocols through them with hand-computed ranks;
on tiny copies in the official formats (``benchmark_fixtures``) and on the 24 real MSR-VTT clips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import benchmark_fixtures as fx
import pytest
import torch
from helpers import CONFIGS, MSRVTT24, needs_msrvtt24
from lightning.pytorch import Callback

from datamodules.annotations import LabelledVideoRecord, VideoTextRecord
from datamodules.bad_samples import MissingFilesError
from datamodules.options import LoaderOptions
from datamodules.public_data import ClassificationBenchmark, RetrievalBenchmark
from datamodules.public_sets import (
    get_benchmark,
    list_benchmarks,
    read_activitynet,
    read_didemo,
    read_kinetics,
    read_msrvtt_data,
    read_msrvtt_jsfusion,
    read_ssv2,
    read_ssv2_labels,
    read_vatex,
    register_benchmark,
)
from heads.clip import ClipHead
from trajtok.cli import TrajTokCLI


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> dict[str, Path]:
    """A tiny copy of every benchmark, each in its own folder."""
    base = tmp_path_factory.mktemp("benchmarks")
    return {name: fx.layout(name, base / name) for name in ("msrvtt_1ka", "didemo", "activitynet", "vatex",
                                                              "k400", "ssv2")}


def stems(records) -> list[str]:
    return [os.path.splitext(os.path.basename(r.video))[0] for r in records]


# ------------------------------------------------------------------------------------------------ readers


def test_msrvtt_1ka_csv_gives_one_caption_per_clip(copies):
    root = copies["msrvtt_1ka"]
    csv_path = str(root / "msrvtt_data/MSRVTT_JSFUSION_test.csv")
    records = read_msrvtt_jsfusion(csv_path, str(root / "videos/all"))
    assert records == [
        VideoTextRecord(video=str(root / "videos/all/video3.mp4"), captions=("a girl sings on stage",)),
        VideoTextRecord(video=str(root / "videos/all/video4.mp4"), captions=("people dance at a party",)),
    ]
    assert records[1].origin == f"{csv_path}, row 3"  # the header is line 1


def test_msrvtt_data_json_splits_9k_7k_and_official_test(copies):
    root = copies["msrvtt_1ka"]
    data, test_csv, videos = (str(root / "msrvtt_data/MSRVTT_data.json"),
                              str(root / "msrvtt_data/MSRVTT_JSFUSION_test.csv"), str(root / "videos/all"))
    # 9k: every clip but the 1k-A ones (video3, video4), whatever its official split.
    nine = read_msrvtt_data(data, videos, "9k", test_csv)
    assert stems(nine) == ["video0", "video1", "video2"]
    assert nine[0].captions == ("a man talks", "someone speaks") and nine[2].captions == ("cars race", "a race on a track")
    assert stems(read_msrvtt_data(data, videos, "7k")) == ["video0", "video1", "video4"]  # train + validate
    assert stems(read_msrvtt_data(data, videos, "test")) == ["video2", "video3"]
    with pytest.raises(ValueError, match="test_csv"):
        read_msrvtt_data(data, videos, "9k")
    with pytest.raises(ValueError, match="'9k', '7k' or 'test'"):
        read_msrvtt_data(data, videos, "1k")


def test_msrvtt_bad_files_name_the_file_and_row(tmp_path):
    csv_path = fx.write_csv(tmp_path / "t.csv", ["key", "vid_key", "video_id", "sentence"],
                            [["ret0", "msr1", "video1", "a cat"], ["ret1", "msr1", "video1", "a cat again"]])
    with pytest.raises(ValueError, match=r"t\.csv, row 3: video_id 'video1' repeats row 2"):
        read_msrvtt_jsfusion(str(csv_path), "v")
    fx.write_csv(csv_path, ["key", "video_id", "sentence"], [["ret0", "video1", " "]])
    with pytest.raises(ValueError, match=r"t\.csv, row 2: 'sentence' must be a non-blank string"):
        read_msrvtt_jsfusion(str(csv_path), "v")
    fx.write_csv(csv_path, ["key", "video", "sentence"], [["ret0", "video1", "a"]])
    with pytest.raises(ValueError, match=r"t\.csv, row 2: missing key 'video_id'"):
        read_msrvtt_jsfusion(str(csv_path), "v")

    data = {"videos": [{"video_id": "video0", "split": "train"}],
            "sentences": [{"video_id": "video0", "caption": "a"}, {"video_id": "video9", "caption": "b"}]}
    path = fx.write_json(tmp_path / "d.json", data)
    with pytest.raises(ValueError, match=r"d\.json, sentences\[1\]: video_id 'video9' is not among 'videos'"):
        read_msrvtt_data(str(path), "v", "7k")
    data["sentences"].pop()
    fx.write_json(path, data)
    fx.write_jsfusion(csv_path, {"video5": "x"})
    with pytest.raises(ValueError, match=r"1 1k-A clips are not in .*d\.json, e\.g\. 'video5'"):
        read_msrvtt_data(str(path), "v", "9k", str(csv_path))


def test_didemo_joins_each_videos_descriptions_into_one_paragraph(copies):
    root = copies["didemo"]
    records = read_didemo(str(root / "test_data.json"), str(root / "videos"))
    assert [r.captions for r in records] == [(p,) for p in fx.DIDEMO_PARAGRAPHS.values()]
    # The .mov / .avi named in the file were transcoded to .mp4; the whole video is the clip.
    assert [r.video for r in records] == [str(root / "videos" / f"{s}.mp4") for s in fx.DIDEMO_PARAGRAPHS]
    assert all(r.start_sec is None and r.end_sec is None for r in records)
    assert records[2].origin == f"{root / 'test_data.json'}, row 4"


def test_didemo_missing_clip_keeps_the_name_the_file_gives(tmp_path):
    path = fx.write_json(tmp_path / "d.json", [{"video": "gone.mov", "description": "x", "times": [[0, 0]]}])
    (record,) = read_didemo(str(path), str(tmp_path / "videos"))
    assert record.video == str(tmp_path / "videos/gone.mov")
    fx.write_json(path, [{"video": "a.mov", "description": "x"}, {"video": "a.mov", "description": 3}])
    with pytest.raises(ValueError, match=r"d\.json, row 2: 'description' must be a non-blank string"):
        read_didemo(str(path), "v")


def test_activitynet_paragraphs_and_errors(copies, tmp_path):
    root = copies["activitynet"]
    records = read_activitynet(str(root / "captions/val_1.json"), str(root / "videos"))
    assert {stems([r])[0]: r.captions for r in records} == {k: (p,) for k, p in fx.ACTIVITYNET_PARAGRAPHS.items()}
    assert records[0].video == str(root / "videos/v_aaa.mp4")
    path = fx.write_json(tmp_path / "a.json", {"v_x": {"sentences": ["ok"]}, "v_y": {"sentences": "one string"}})
    with pytest.raises(ValueError, match=r"a\.json, key 'v_y': 'sentences' must be a list of strings"):
        read_activitynet(str(path), "v")


def test_vatex_keeps_every_english_caption(copies, tmp_path):
    root = copies["vatex"]
    records = read_vatex(str(root / "vatex_validation_v1.0.json"), str(root / "videos"))
    assert {stems([r])[0]: list(r.captions) for r in records} == fx.VATEX
    path = fx.write_json(tmp_path / "private.json", [{"videoID": "abcdefghijk_000010_000020"}])
    with pytest.raises(ValueError, match=r"private\.json, row 1: missing key 'enCap'"):
        read_vatex(str(path), "v")


def test_kinetics_csv_names_clips_by_youtube_id_and_segment(copies, tmp_path):
    root = copies["k400"]
    records = read_kinetics(str(root / "annotations/val.csv"), str(root))
    assert [r.label for r in records] == [row[0] for row in fx.KINETICS]
    # Found in the CVDF layout's split folder.
    assert records[3].video == str(root / "val/ddddddddddd_000120_000130.mp4")
    # A class-folder layout (spaces as "_") is found too; a missing clip keeps the flat name.
    fx.write_clip(tmp_path / "air_drumming" / "bbbbbbbbbbb_000000_000010.mp4", 80)
    found = read_kinetics(str(root / "annotations/val.csv"), str(tmp_path))
    assert found[1].video == str(tmp_path / "air_drumming/bbbbbbbbbbb_000000_000010.mp4")
    assert found[0].video == str(tmp_path / "aaaaaaaaaaa_000010_000020.mp4")
    mixed = fx.write_csv(tmp_path / "all.csv", ["label", "youtube_id", "time_start", "time_end", "split"],
                         [["a", "x", 0, 10, "train"], ["b", "y", 0, 10, "val"]])
    assert [r.label for r in read_kinetics(str(mixed), "v", split="val")] == ["b"]
    bad = fx.write_csv(tmp_path / "bad.csv", ["label", "youtube_id", "time_start", "time_end", "split"],
                       [["a", "x", 0, 10, "val"], ["b", "y", "1.5", 10, "val"]])
    with pytest.raises(ValueError, match=r"bad\.csv, row 3: 'time_start' must be a whole number"):
        read_kinetics(str(bad), "v")


def test_ssv2_templates_map_to_the_official_class_indices(copies, tmp_path):
    root = copies["ssv2"]
    labels = str(root / "labels/something-something-v2-labels.json")
    assert read_ssv2_labels(labels) == fx.SSV2_CLASSES
    records = read_ssv2(str(root / "labels/something-something-v2-validation.json"), labels,
                        str(root / "20bn-something-something-v2"))
    assert records[0] == LabelledVideoRecord(video=str(root / "20bn-something-something-v2/74225.webm"), label=1,
                                             origin=records[0].origin)
    assert [r.label for r in records] == [1, 2, 0]
    path = fx.write_json(tmp_path / "v.json", [{"id": "1", "template": "Dropping [something]"}])
    with pytest.raises(ValueError, match=r"v\.json, row 1: template 'Dropping something' is not a class"):
        read_ssv2(str(path), labels, "v")
    fx.write_json(tmp_path / "l.json", {"a": "0", "b": "0"})
    with pytest.raises(ValueError, match=r"l\.json, key 'b': class index 0 is also 'a'"):
        read_ssv2_labels(str(tmp_path / "l.json"))


# ------------------------------------------------------------------------------- registry and datamodules


def test_registry_lists_benchmarks_by_task_and_refuses_unknown_names(copies):
    assert list_benchmarks("retrieval") == ["activitynet", "didemo", "msrvtt_1ka", "msrvtt_7k", "msrvtt_9k", "vatex"]
    assert list_benchmarks("classification") == ["k400", "ssv2"]
    assert get_benchmark("didemo").videos == "videos"
    with pytest.raises(ValueError, match="taken"):
        register_benchmark("vatex", "retrieval", videos="v")(lambda split, files, video_dir: [])
    with pytest.raises(ValueError, match=r"benchmark: unknown retrieval benchmark 'k400'; known: activitynet, "):
        RetrievalBenchmark("k400", str(copies["k400"]), test_annotations="annotations/val.csv")
    with pytest.raises(ValueError, match=r"benchmark: unknown classification benchmark 'msrvtt'; known: k400, ssv2"):
        ClassificationBenchmark("msrvtt", str(copies["k400"]), test_annotations="annotations/val.csv")
    with pytest.raises(ValueError, match="set at least one of train_annotations"):
        RetrievalBenchmark("vatex", str(copies["vatex"]))


def test_msrvtt_9k_datamodule_trains_outside_the_test_clips(copies):
    dm = RetrievalBenchmark("msrvtt_9k", str(copies["msrvtt_1ka"]), train_annotations="msrvtt_data/MSRVTT_data.json",
                            test_annotations="msrvtt_data/MSRVTT_JSFUSION_test.csv",
                            loader=LoaderOptions(batch_size=2))
    dm.setup("fit")
    assert stems(dm.datasets["train"].records) == ["video0", "video1", "video2"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 8, 3, 64, 64) and all(t in c for t, c in zip(batch["text"], batch["captions"]))
    only_train = RetrievalBenchmark("msrvtt_9k", str(copies["msrvtt_1ka"]),
                                    train_annotations="msrvtt_data/MSRVTT_data.json")
    with pytest.raises(ValueError, match="no test annotations given"):
        only_train.setup("fit")


def test_a_missing_clip_is_skipped_and_reported_or_raised_with_its_row(copies, tmp_path):
    csv_path = fx.write_jsfusion(tmp_path / "t.csv", {"video3": "a", "video404": "b", "video4": "c",
                                                      "video405": "d"})
    kwargs = {"test_annotations": str(csv_path), "video_dir": "videos/all", "loader": LoaderOptions(batch_size=4)}
    dm = RetrievalBenchmark("msrvtt_1ka", str(copies["msrvtt_1ka"]), **kwargs)
    (batch,) = list(dm.test_dataloader())
    assert batch["index"].tolist() == [0, 2]  # video404 and video405 left out
    assert [s["path"] for s in batch["skipped"]] == [str(copies["msrvtt_1ka"] / f"videos/all/video{n}.mp4")
                                                     for n in (404, 405)]
    # A preset that stops on a missing clip finds them all before the first batch, in one error.
    dm = RetrievalBenchmark("msrvtt_1ka", str(copies["msrvtt_1ka"]), on_bad_video="raise", **kwargs)
    with pytest.raises(MissingFilesError, match=r"^2 file\(s\).*video404\.mp4 \(.*t\.csv, row 3\); .*video405\.mp4 "
                                                r"\(.*t\.csv, row 5\)$"):
        dm.setup("test")


def test_classification_benchmarks_class_lists(copies):
    k400 = ClassificationBenchmark("k400", str(copies["k400"]), test_annotations="annotations/val.csv", video_dir=".")
    assert k400.class_names == fx.KINETICS_CLASSES  # sorted label names
    (batch,) = list(k400.test_dataloader())
    assert batch["label"].tolist() == [0, 1, 0, 2] and batch["video"].shape[1:] == (8, 3, 64, 64)
    ssv2 = ClassificationBenchmark("ssv2", str(copies["ssv2"]),
                                   test_annotations="labels/something-something-v2-validation.json")
    assert ssv2.class_names == fx.SSV2_CLASSES  # the label file's order, not sorted
    (batch,) = list(ssv2.test_dataloader())
    assert batch["label"].tolist() == [1, 2, 0] and not batch["skipped"]  # the .webm clips decode


# ------------------------------------------------------------------ the protocols, with hand-computed ranks


def scored_retrieval(dm: RetrievalBenchmark, video_vectors: dict[str, list[float]],
                     text_vectors: dict[str, list[float]]) -> dict[str, float]:
    """The CLIP head's test metrics over a datamodule's test batches, with embeddings looked up by clip name and
    by text (so the similarity of a caption with a clip is the dot product of the given vectors)."""
    head = ClipHead(width=16, depth=1, heads=2, embed_dim=3)
    for batch in dm.test_dataloader():
        records = dm.datasets["test"].records
        names = [stems([records[i]])[0] for i in batch["index"].tolist()]
        head.encode_video = lambda tokens, names=names: torch.tensor([video_vectors[n] for n in names])
        head.encode_text = lambda texts: torch.tensor([text_vectors[t] for t in texts])
        head.update_metrics(None, batch)
    return {k: float(v) for k, v in head.compute_metrics().items()}


ONE_HOT = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_vatex_ranks_every_caption_text_to_video_and_the_best_caption_video_to_text(copies):
    dm = RetrievalBenchmark("vatex", str(copies["vatex"]), test_annotations="vatex_validation_v1.0.json",
                            loader=LoaderOptions(batch_size=2))
    a, b, c = fx.VATEX  # clips; with one-hot clip vectors a caption's vector is its row of scores over (a, b, c)
    texts = {
        "a dog runs": [0.9, 0.1, 0.0],     # a first: rank 1
        "a dog sits": [0.2, 0.5, 0.3],     # a below b and c: rank 3
        "a man cooks": [0.6, 0.4, 0.1],    # b below a: rank 2
        "food in a pan": [0.1, 0.3, 0.8],  # b below c: rank 2
        "two kids swim": [0.3, 0.2, 0.7],  # rank 1
        "a pool": [0.5, 0.0, 0.4],         # c below a: rank 2
    }
    metrics = scored_retrieval(dm, dict(zip((a, b, c), ONE_HOT)), texts)
    # t2v: 6 queries with ranks 1, 3, 2, 2, 1, 2.
    assert metrics["t2v_r1"] == pytest.approx(100 * 2 / 6) and metrics["t2v_r5"] == 100
    assert metrics["t2v_medr"] == 2 and metrics["t2v_meanr"] == pytest.approx(11 / 6)
    # v2t, each clip's best caption: a by "a dog runs" (0.9, first of all 6 texts): 1; b by "a man cooks" (0.4),
    # behind "a dog sits" (0.5): 2; c by "two kids swim" (0.7), behind "food in a pan" (0.8): 2.
    assert metrics["v2t_r1"] == pytest.approx(100 / 3) and metrics["v2t_meanr"] == pytest.approx(5 / 3)
    assert metrics["v2t_medr"] == 2


def test_didemo_ranks_one_paragraph_per_video(copies):
    dm = RetrievalBenchmark("didemo", str(copies["didemo"]), test_annotations="test_data.json",
                            loader=LoaderOptions(batch_size=2))
    x, y, z = fx.DIDEMO_PARAGRAPHS
    paragraphs = dict(zip(fx.DIDEMO_PARAGRAPHS.values(), [
        [0.9, 0.2, 0.1],  # x first: rank 1
        [0.3, 0.2, 0.5],  # y below x and z: rank 3
        [0.1, 0.6, 0.4],  # z below y: rank 2
    ]))
    metrics = scored_retrieval(dm, dict(zip((x, y, z), ONE_HOT)), paragraphs)
    assert metrics["t2v_r1"] == pytest.approx(100 / 3) and metrics["t2v_meanr"] == pytest.approx(2.0)
    # v2t: x: 1; y's own paragraph (0.2) ties x's (0.2) and trails z's (0.6): 3 (ties count against); z: 2.
    assert metrics["v2t_r1"] == pytest.approx(100 / 3) and metrics["v2t_meanr"] == pytest.approx(2.0)
    assert metrics["v2t_medr"] == 2


def test_k400_zero_shot_prompts_the_class_names_in_their_index_order(copies):
    dm = ClassificationBenchmark("k400", str(copies["k400"]), test_annotations="annotations/val.csv", video_dir=".")
    head = ClipHead(width=16, depth=1, heads=2, embed_dim=3)
    head.set_class_names(dm.class_names)  # as TrajTokModule.setup does

    def encode_text(prompts: list[str]) -> torch.Tensor:
        """One-hot on the class a prompt names (every prompt names exactly one)."""
        hot = torch.tensor([[float(name in p) for name in fx.KINETICS_CLASSES] for p in prompts])
        assert (hot.sum(dim=1) == 1).all()
        return hot

    head.encode_text = encode_text
    videos = [[1.0, 0.0, 0.0],   # abseiling, right
              [0.2, 0.1, 0.7],   # air drumming, scored last of 3: wrong at top-1, right at top-5
              [0.5, 0.4, 0.0],   # abseiling, right
              [0.0, 0.3, 0.6]]   # zumba, right
    for batch in dm.test_dataloader():
        head.encode_video = lambda tokens, index=batch["index"]: torch.tensor([videos[i] for i in index.tolist()])
        head.update_metrics(None, batch)
    metrics = head.compute_metrics()
    assert float(metrics["zeroshot_top1"]) == 75 and float(metrics["zeroshot_top5"]) == 100


# ------------------------------------------------------------------------------- 24 real MSR-VTT clips


class ScoredClips(Callback):
    """The distinct test samples that reached the model, and the skip reports."""

    def __init__(self) -> None:
        self.indices: set[int] = set()
        self.captions: dict[int, list[str]] = {}
        self.skipped: list[dict] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.indices.update(batch["index"].tolist())
        self.captions.update(zip(batch["index"].tolist(), batch["captions"]))
        self.skipped.extend(batch["skipped"])


@needs_msrvtt24
@pytest.mark.slow
def test_msrvtt24_through_the_1ka_preset_scores_24_clips(cli_in_tmp):
    rows = [json.loads(line) for line in (MSRVTT24 / "captions.jsonl").read_text().splitlines() if line.strip()]
    captions = {Path(r["video"]).stem: r["caption"] for r in rows}
    assert len(captions) == 24
    csv_path = fx.write_jsfusion(cli_in_tmp / "MSRVTT_JSFUSION_test.csv", captions)
    scored = ScoredClips()
    cli = TrajTokCLI(
        args=["test", "--config", str(CONFIGS / "clip.yaml"),
              "--config", str(CONFIGS / "benchmarks/msrvtt_1ka.yaml"),
              f"--data.init_args.root={MSRVTT24}", f"--data.init_args.test_annotations={csv_path}",
              "--data.init_args.video_dir=videos", "--data.init_args.clip.image_size=64",
              "--data.init_args.loader.batch_size=8", "--data.init_args.loader.num_workers=0",
              "--model.head.init_args.depth=1", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
              "--allow_untrained=true"],
        trainer_defaults={"callbacks": [scored]},
    )
    metrics = {k.removeprefix("test/"): float(v) for k, v in cli.trainer.callback_metrics.items()}
    assert scored.indices == set(range(24)) and not scored.skipped
    assert sorted(c for (c,) in scored.captions.values()) == sorted(captions.values())
    for direction in ("t2v", "v2t"):
        for k in (1, 5, 10):
            recall = metrics[f"{direction}_r{k}"]
            # 24 queries: a recall is a whole number of 24ths.
            assert 0 <= recall <= 100 and recall * 24 / 100 == pytest.approx(round(recall * 24 / 100), abs=1e-4)
        assert 1 <= metrics[f"{direction}_medr"] <= 24 and 1 <= metrics[f"{direction}_meanr"] <= 24
    assert metrics["t2v_r1"] <= metrics["t2v_r5"] <= metrics["t2v_r10"]
