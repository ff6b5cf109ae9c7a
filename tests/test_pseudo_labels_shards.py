"""``trajtok pseudo-label`` of tar shards: every sample labelled once under ``<out_dir>/<shard name>/<key>``,
resumed without decoding, failures named by shard and key, and the labels read back by ``ShardDataModule`` for
training; two DDP processes share the shards and ``trajtok fit`` trains on the result (slow)."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import pytest
from builders import quiet_trainer
from helpers import ROOT, run_trajtok
from pseudo_label_oracles import HalvesSegmenter, StillPropagator

from datamodules import ShardDataModule, VideoTextDataModule, write_shards
from datamodules.options import ClipOptions, LoaderOptions, SyntheticOptions
from datamodules.pseudo_label_files import load_pseudo_labels, shard_label_paths
from datamodules.video import read_all_frames
from datamodules.videos_to_label import PseudoLabelDataModule
from trajtok.pseudo_labels import FixedChunks, PseudoLabeller, PseudoLabelWriter


@pytest.fixture(scope="module")
def shards(tmp_path_factory, cache) -> list[str]:
    """Three shards (3, 3 and 2 samples, keys ``clips/v0`` ...) of the synthetic test videos."""
    data = VideoTextDataModule(synthetic=SyntheticOptions(cache_dir=str(cache), train=16, val=8, test=8))
    data.setup("test")
    records = [(f"clips/v{i}", r.video, list(r.captions)) for i, r in enumerate(data.datasets["test"].records)]
    return write_shards(records, str(tmp_path_factory.mktemp("shards") / "part-%03d.tar"), samples_per_shard=3)


def predict(data: PseudoLabelDataModule) -> PseudoLabelWriter:
    writer = PseudoLabelWriter()
    trainer = quiet_trainer(devices=1, callbacks=[writer])
    trainer.predict(PseudoLabeller(HalvesSegmenter(), StillPropagator(), FixedChunks(4)), datamodule=data)
    return writer


def summary(out: Path) -> list[dict]:
    with open(out / "summary.csv") as f:
        return list(csv.DictReader(f))


def append_broken_sample(shard: str, path: Path) -> None:
    """A copy of ``shard`` with one more sample, ``clips/broken``, whose video is not a video."""
    with tarfile.open(shard) as src, tarfile.open(path, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        for name, data in (("clips/broken.mp4", b"not a video"), ("clips/broken.txt", b"a caption")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


def test_shard_samples_are_labelled_by_key_resumed_and_failures_named(shards, tmp_path):
    broken = tmp_path / "extra-000.tar"
    append_broken_sample(shards[2], broken)
    out = tmp_path / "labels"
    writer = predict(PseudoLabelDataModule(str(out), shards=[*shards[:2], str(broken)], num_workers=2))
    assert writer.counts == {"labelled": 8, "done": 0, "failed": 1}
    names = [f"part-00{s}/clips/v{i}" for s, i in [(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (1, 5)]]
    names += ["extra-000/clips/v6", "extra-000/clips/v7"]
    rows = summary(out)
    assert sorted(r["name"] for r in rows if r["status"] == "labelled") == sorted(names)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["name"] for r in failed] == ["extra-000/clips/broken"] and "cannot open" in failed[0]["reason"]
    masks, graph, _ = load_pseudo_labels(*shard_label_paths(str(out), shards[0], "clips/v1"))
    with tarfile.open(shards[0]) as tar:
        frames = read_all_frames(tar.extractfile("clips/v1.mp4").read())
    assert masks.shape == frames.shape[:3] and graph.shape == (2, len(frames))  # every frame, two halves
    assert not (out / "pseudo_labels.jsonl").exists()  # shards train from the label folder, not an annotation file
    again = predict(PseudoLabelDataModule(str(out), shards=[*shards[:2], str(broken)]))
    assert again.counts == {"labelled": 0, "done": 8, "failed": 1}
    with pytest.raises(ValueError, match="exactly one"):
        PseudoLabelDataModule(str(out), shards=shards, folder=str(tmp_path))


def test_shard_datamodule_trains_on_the_labels_of_its_shards(shards, tmp_path):
    out = tmp_path / "labels"
    predict(PseudoLabelDataModule(str(out), shards=shards[:2]))
    data = ShardDataModule(train_shards=shards[:2], test_shards=shards, pseudo_labels=str(out), shuffle_buffer=0,
                           clip=ClipOptions(num_frames=4, image_size=32), loader=LoaderOptions(batch_size=3, num_workers=0))
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["mask"].shape == (3, 4, 32, 32) and batch["graph"].shape[:2] == (3, 2)
    assert set(batch["mask"].unique().tolist()) <= {1, 2} and batch["stuff"].shape == (3, 2)
    data.setup("test")
    test = list(data.test_dataloader())
    assert sum(len(b["index"]) for b in test) == 6  # the third shard has no labels yet: its samples are skipped
    assert data.datasets["test"].num_skipped == 2
    assert all(b["mask"][:, :, :, :16].eq(1).all() for b in test)  # the left half stays the left half
    with pytest.raises(ValueError, match="pseudo_labels"):
        ShardDataModule(train_shards=shards, pseudo_labels=str(tmp_path / "nowhere")).setup("fit")


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.distributed
def test_two_ddp_processes_label_each_shard_sample_once_and_the_segmenter_trains_on_them(shards, tmp_path, cache):
    result = run_trajtok([
        "pseudo-label", "--config", str(ROOT / "configs/pseudo_labels.yaml"),
        "--model.segmenter=pseudo_label_oracles.HalvesSegmenter",
        "--model.propagator=pseudo_label_oracles.StillPropagator",
        "--model.chunker=trajtok.pseudo_labels.FixedChunks",
        "--data.source=null", f"--data.shards={json.dumps(shards)}", "--data.out_dir=labels", "--data.num_workers=1",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
        "--trainer.devices=2", "--trainer.strategy=ddp",
    ], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for p in sorted((tmp_path / "labels").glob("stats.rank*.jsonl"))
            for line in p.read_text().splitlines()]
    assert sorted(r["name"] for r in rows) == sorted(f"part-00{i // 3}/clips/v{i}" for i in range(8))
    assert {p.name for p in (tmp_path / "labels").glob("stats.rank*.jsonl")} == {"stats.rank0.jsonl", "stats.rank1.jsonl"}
    assert len(list((tmp_path / "labels").rglob("*_mask.npz"))) == 8
    assert "8 shard samples labelled" in result.stderr + result.stdout
    shard_list = json.dumps(shards)
    fit = run_trajtok(["fit", "--config", str(ROOT / "configs/segmenter.yaml"), "--data", "datamodules.ShardDataModule",
                       f"--data.init_args.train_shards={shard_list}", f"--data.init_args.val_shards={shard_list}",
                       "--data.init_args.pseudo_labels=labels", "--data.init_args.loader.batch_size=4",
                       "--data.init_args.loader.num_workers=0", "--trainer.max_steps=2", "--trainer.limit_val_batches=1",
                       "--trainer.enable_progress_bar=false"], tmp_path, cache)
    assert fit.returncode == 0, fit.stderr[-3000:]  # the labelled shards train the segmenter, unconverted
    assert "val/seg_miou" in (tmp_path / "runs/segmenter/logs/version_0/metrics.csv").read_text()
