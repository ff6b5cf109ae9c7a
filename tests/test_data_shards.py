"""Tar shards: writing, grouping by key, splitting over ranks x workers, epochs, captions, bad samples."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from builders import quiet_trainer
from processes import run_ranks

from datamodules import ShardDataModule, ShardedVideoTextDataset
from datamodules.annotations import read_video_text_annotations
from datamodules.bad_samples import WorkerUserError
from datamodules.collate import collate_video_text
from datamodules.options import ClipOptions, LoaderOptions
from datamodules.seeding import epoch_seeds
from datamodules.shards import (
    INDEX_STRIDE,
    SampleMembersError,
    ShardError,
    ShardLoader,
    expand_braces,
    expand_shards,
    iterate_shard,
    write_shards,
)
from datamodules.synthetic import SyntheticConfig, ensure_synthetic, write_mp4
from datamodules.video import BadSampleError, VideoDecodeError, decode_clip

CLIP = ClipOptions(num_frames=4, image_size=32)
SMALL = {"clip": CLIP}


@pytest.fixture(scope="module")
def data(tmp_path_factory, cache):
    """The synthetic set (16 / 8 / 8) as shards: train 3 per shard (6 shards, the last holding 1), val 1
    shard, test 2 shards."""
    tmp = tmp_path_factory.mktemp("shards")
    root = ensure_synthetic(str(cache), SyntheticConfig(train=16, val=8, test=8))
    records = {s: read_video_text_annotations(os.path.join(root, f"{s}.jsonl")) for s in ("train", "val", "test")}
    per_shard = {"train": 3, "val": 8, "test": 4}
    shards = {s: write_shards(records[s], str(tmp / f"{s}-%06d.tar"), per_shard[s]) for s in records}
    return SimpleNamespace(tmp=tmp, root=root, records=records, shards=shards)


def all_train_indices(data) -> set[int]:
    return {n * INDEX_STRIDE + p for n in range(6) for p in range(3) if n * 3 + p < 16}


def epoch_indices(shards, rank, world_size, epoch, num_workers=2, **kwargs) -> list[int]:
    """Indices one simulated rank reads in an epoch through a real DataLoader with workers."""
    dataset = ShardedVideoTextDataset(shards, **SMALL, rank=rank, world_size=world_size, **kwargs)
    loader = ShardLoader(dataset, batch_size=2, num_workers=num_workers, collate_fn=collate_video_text,
                         current_epoch=lambda: epoch)
    return [i for batch in loader for i in batch["index"].tolist()]


def write_tar(path, members):
    """A tar of ``(name, bytes)`` members, in order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("mp4") / "clip.mp4")
    frames = np.stack([np.full((16, 16, 3), 20 * t, dtype=np.uint8) for t in range(6)])
    write_mp4(path, frames, fps=6)
    with open(path, "rb") as f:
        return f.read()


# ------------------------------------------------------------------------------------------ shard lists


def test_brace_patterns_expand_in_order():
    assert expand_braces("d/s-{000000..000002}.tar") == ["d/s-000000.tar", "d/s-000001.tar", "d/s-000002.tar"]
    assert expand_braces("s-{8..10}.tar") == ["s-8.tar", "s-9.tar", "s-10.tar"]
    assert expand_braces("{a,b}/s-{0..1}.tar") == ["a/s-0.tar", "a/s-1.tar", "b/s-0.tar", "b/s-1.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    assert expand_shards(["x-{1..2}.tar", "y.tar"]) == ["x-1.tar", "x-2.tar", "y.tar"]
    with pytest.raises(ValueError, match="cannot expand"):
        expand_braces("s-{abc}.tar")
    with pytest.raises(ValueError, match="empty range"):
        expand_braces("s-{3..1}.tar")
    with pytest.raises(ValueError, match="more than once"):
        expand_shards(["s-{0..1}.tar", "s-1.tar"])


def test_written_shards_group_members_by_key(data):
    paths = data.shards["train"]
    assert len(paths) == 6 and all(os.path.basename(p) == f"train-{i:06d}.tar" for i, p in enumerate(paths))
    samples = [s for p in paths for s in iterate_shard(p)]
    assert [s.key for s in samples] == [f"{i:09d}" for i in range(16)]
    assert [s.position for s in samples[:4]] == [0, 1, 2, 0] and samples[-1].position == 0
    assert all(set(s.files) == {"mp4", "txt", "json"} for s in samples)
    first = data.records["train"][0]
    with open(first.video, "rb") as f:
        assert samples[0].files["mp4"] == f.read()
    assert samples[0].files["txt"].decode() == first.captions[0]
    assert json.loads(samples[0].files["json"])["captions"] == list(first.captions)
    # The brace pattern over the written files is the same list.
    pattern = str(data.tmp / "train-{000000..000005}.tar")
    assert ShardedVideoTextDataset(pattern).shards == paths


# ------------------------------------------------------------------------------------------ who reads what


def test_every_sample_once_per_epoch_across_2_ranks_x_2_workers(data):
    expected = all_train_indices(data)
    orders = []
    for epoch in (0, 1):
        per_rank = [epoch_indices(data.shards["train"], rank, 2, epoch, train=True, shuffle_buffer=4) for rank in (0, 1)]
        for indices in per_rank:
            assert len(indices) == len(set(indices))  # nothing twice within a rank
        assert not set(per_rank[0]) & set(per_rank[1])  # nor across ranks
        assert set(per_rank[0]) | set(per_rank[1]) == expected
        orders.append(per_rank)
    assert orders[0] != orders[1]  # a new shard order (and buffer draws) in the second epoch


def test_shard_order_depends_on_seed_and_epoch_only(data):
    dataset = ShardedVideoTextDataset(data.shards["train"], train=True)
    order = {epoch: dataset.shards_for(0, 1, 0, 1, epoch) for epoch in range(4)}
    assert all(sorted(o) == list(range(6)) for o in order.values())
    assert len({tuple(o) for o in order.values()}) > 1
    assert dataset.shards_for(0, 1, 0, 1, 2) == order[2]  # deterministic
    # Every rank deals from the same order: ranks' shards partition it.
    parts = [dataset.shards_for(r, 2, w, 2, 1) for r in (0, 1) for w in (0, 1)]
    assert sorted(n for p in parts for n in p) == list(range(6))
    assert ShardedVideoTextDataset(data.shards["train"], train=False).shards_for(0, 1, 0, 1, 5) == list(range(6))


def test_the_same_seed_and_epoch_read_the_same_samples_in_the_same_order(data):
    # What makes a resumed run read its epoch as the uninterrupted run did: shard order and buffer draws
    # come from (seed, epoch, rank, worker) only, never from the process or the clock.
    def read(seed, epoch):
        return epoch_indices(data.shards["train"], 1, 2, epoch, train=True, shuffle_buffer=4, seed=seed)

    assert read(0, 1) == read(0, 1)
    assert read(0, 1) != read(1, 1)


def test_shard_loader_without_a_trainer_counts_its_epochs(data):
    dataset = ShardedVideoTextDataset(data.shards["train"], **SMALL, train=True)
    loader = ShardLoader(dataset, batch_size=4, collate_fn=collate_video_text)
    first = [i for b in loader for i in b["index"].tolist()]
    assert dataset.epoch == 0
    second = [i for b in loader for i in b["index"].tolist()]
    assert dataset.epoch == 1
    assert first != second and sorted(first) == sorted(second) == sorted(all_train_indices(data))
    with pytest.raises(ValueError, match="persistent_workers=False"):
        ShardLoader(dataset, num_workers=2, persistent_workers=True)


def test_fewer_shards_than_readers_is_a_clear_error(data):
    two = data.shards["test"]
    # Raised in a worker: the main process gets the message alone (a user error, WorkerUserError), no traceback text.
    with pytest.raises(WorkerUserError, match=r"^2 shards cannot feed 2 rank\(s\) x 2 DataLoader worker\(s\) = 4 readers"):
        epoch_indices(two, 0, 2, 0)
    assert len(epoch_indices(two, 1, 2, 0, num_workers=0)) == 4  # one reader per rank is fine


def test_samples_per_epoch_gives_every_rank_the_same_count(data):
    # 16 samples in 6 shards cannot split evenly over 2 ranks x 2 workers; the cap evens them out.
    for total, per_rank in ((14, 7), (40, 20)):  # 40: more than there are, so readers repeat their shards
        counts = []
        for rank in (0, 1):
            dataset = ShardedVideoTextDataset(data.shards["train"], **SMALL, rank=rank, world_size=2,
                                              samples_per_epoch=total)
            assert len(dataset) == per_rank
            loader = ShardLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_video_text)
            batches = list(loader)
            indices = [i for b in batches for i in b["index"].tolist()]
            assert set(indices) <= all_train_indices(data)
            assert len(loader) == len(batches)  # workers batch their own shares: 7 -> 4 + 3 -> 2 + 2 batches
            counts.append(len(indices))
        assert counts == [per_rank, per_rank]
    loader = ShardLoader(dataset, batch_size=4, num_workers=2, drop_last=True, collate_fn=collate_video_text)
    assert len(loader) == len(list(loader)) == 4  # 10 + 10 samples: 2 full batches per worker


def test_samples_per_epoch_carries_reports_into_the_next_pass_and_fails_when_nothing_loads(tmp_path, mp4):
    shard = write_tar(tmp_path / "end.tar", [("good.mp4", mp4), ("good.txt", b"fine"), ("mute.mp4", mp4)])
    samples = list(ShardedVideoTextDataset(shard, **SMALL, samples_per_epoch=3))
    assert [s["index"] for s in samples] == [0, 0, 0]  # one good sample, read in three passes
    # What the end of a pass skipped comes with the first sample of the next pass.
    assert [[r["index"] for r in s["skipped"]] for s in samples] == [[], [1], [1]]
    assert samples[1]["skipped"][0]["path"] == f"{shard}:mute"

    bad = write_tar(tmp_path / "bad.tar", [("mute.mp4", mp4), ("novideo.txt", b"no video")])
    dataset = ShardedVideoTextDataset(bad, **SMALL, samples_per_epoch=2)
    with pytest.raises(RuntimeError, match=r"none of the samples of shards .*bad.tar.* can be loaded"):
        list(dataset)  # a short share would leave this rank behind the others under DDP
    assert dataset.num_skipped == 2


# ------------------------------------------------------------------------------------------ samples


def test_captions_from_txt_and_json(tmp_path, mp4):
    shard = write_tar(tmp_path / "captions.tar", [
        ("a.mp4", mp4), ("a.txt", b"a red circle\n"),
        ("b.mp4", mp4), ("b.json", json.dumps({"caption": "a blue square", "url": "http://x", "status": "success"}).encode()),
        ("c.json", json.dumps({"captions": ["one", "two"], "caption": "three"}).encode()), ("c.mp4", mp4),
        ("d.mp4", mp4), ("d.txt", b"same"), ("d.json", json.dumps({"caption": "same", "captions": ["other"]}).encode()),
    ])
    dataset = ShardedVideoTextDataset(shard, **SMALL)
    samples = list(dataset)
    assert [s["captions"] for s in samples] == [["a red circle"], ["a blue square"], ["one", "two", "three"], ["same", "other"]]
    assert [s["text"] for s in samples] == ["a red circle", "a blue square", "one", "same"]  # eval: the first
    assert [s["index"] for s in samples] == [0, 1, 2, 3]
    batch = collate_video_text(samples)
    assert batch["video"].shape == (4, 4, 3, 32, 32) and batch["index"].dtype == torch.long
    train = list(ShardedVideoTextDataset(shard, **SMALL, train=True))
    assert all(s["text"] in s["captions"] for s in train)


def test_member_names_make_keys_as_webdataset_does(tmp_path, mp4):
    shard = write_tar(tmp_path / "names.tar", [
        ("README", b"no extension: not a sample"),
        ("a/x1.mp4", mp4), ("a/x1.json", json.dumps({"caption": "in a folder"}).encode()),
        ("a/._x1.mp4", b"a hidden file"),
        ("x2.MP4", mp4), ("x2.seg.txt", b"not the caption"), ("x2.txt", b"upper-case extension"),
    ])
    samples = list(iterate_shard(shard))
    assert [s.key for s in samples] == ["a/x1", "x2"]
    assert sorted(samples[1].files) == ["mp4", "seg.txt", "txt"]
    assert [s["captions"] for s in ShardedVideoTextDataset(shard, **SMALL)] == [["in a folder"], ["upper-case extension"]]


def test_a_repeated_member_or_key_is_a_bad_sample_and_the_shard_reads_on(tmp_path, mp4):
    shard = write_tar(tmp_path / "dup.tar", [
        ("a.mp4", mp4), ("a.txt", b"first"),
        ("b.mp4", mp4), ("b.txt", b"second"), ("b.txt", b"second again"),
        ("c.mp4", mp4), ("c.txt", b"third"),
        ("a.mp4", mp4), ("a.txt", b"first again"),
    ])
    assert [(s.key, s.problem is None) for s in iterate_shard(shard)] == [("a", True), ("b", False), ("c", True),
                                                                          ("a", False)]
    dataset = ShardedVideoTextDataset(shard, **SMALL)
    samples = list(dataset)
    assert [s["index"] for s in samples] == [0, 2] and dataset.bad_shards == []
    assert dataset.num_skipped == 2 and dataset.skipped_paths == [f"{shard}:b", f"{shard}:a"]
    reports = [r for s in samples for r in s["skipped"]]  # the last one rides on the last sample
    assert [(r["index"], r["reason"]) for r in reports] == [
        (1, "member b.txt appears twice in the sample; the sample is left out"),
        (3, "key 'a' is repeated in its shard (first at position 0); the repeat is left out"),
    ]
    with pytest.raises(SampleMembersError, match=r"dup.tar:b: member b.txt appears twice"):
        list(ShardedVideoTextDataset(shard, **SMALL, on_bad_video="raise"))


def test_command_line_writes_an_annotation_file_as_shards(data, tmp_path, capsys):
    from datamodules.shards import main

    main(["--annotations", os.path.join(data.root, "val.jsonl"), "--out", str(tmp_path / "val-%03d.tar"), "--per-shard", "3"])
    assert "wrote 3 shards" in capsys.readouterr().out
    samples = list(ShardedVideoTextDataset(str(tmp_path / "val-{000..002}.tar"), **SMALL))
    assert [s["captions"] for s in samples] == [list(r.captions) for r in data.records["val"]]


def test_write_shards_from_tuples_with_txt_or_json_only(tmp_path, mp4):
    video = tmp_path / "v.mp4"
    video.write_bytes(mp4)
    for files in (("txt",), ("json",)):
        paths = write_shards([("k0", str(video), ["first", "second"]), ("sub/k1", str(video), "only")],
                             str(tmp_path / files[0] / "s-%02d.tar"), 5, caption_files=files)
        samples = list(iterate_shard(paths[0]))
        assert [s.key for s in samples] == ["k0", "sub/k1"] and all(set(s.files) == {"mp4", *files} for s in samples)
        got = [s["captions"] for s in ShardedVideoTextDataset(paths, **SMALL)]
        assert got == ([["first"], ["only"]] if files == ("txt",) else [["first", "second"], ["only"]])
    with pytest.raises(ValueError, match="unique"):
        write_shards([("k", str(video), "a"), ("k", str(video), "b")], str(tmp_path / "d-%d.tar"))
    with pytest.raises(ValueError, match="no '.'"):
        write_shards([("k.x", str(video), "a")], str(tmp_path / "d-%d.tar"))
    with pytest.raises(ValueError, match="printf-style"):
        write_shards([("k", str(video), "a")], str(tmp_path / "d.tar"))
    assert not list(tmp_path.glob("d*"))


def test_write_shards_writes_whole_shards_only_and_gzips_tar_gz(tmp_path, mp4):
    video = tmp_path / "v.mp4"
    video.write_bytes(mp4)
    entries = [("k0", str(video), "a"), ("k1", str(video), "b"), ("k2", str(tmp_path / "gone.mp4"), "c")]
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        write_shards(entries, str(tmp_path / "out" / "s-%d.tar"), 2)
    # The first shard is complete; the second, whose video is missing, left nothing behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s-0.tar"]
    assert [s["captions"] for s in ShardedVideoTextDataset(str(tmp_path / "out" / "s-0.tar"), **SMALL)] == [["a"], ["b"]]
    paths = write_shards(entries[:2], str(tmp_path / "gz" / "s-%d.tar.gz"), 2)
    with open(paths[0], "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzip
    assert [s.key for s in iterate_shard(paths[0])] == ["k0", "k1"]


def test_bad_samples_are_skipped_and_counted_or_raised(tmp_path, mp4):
    shard = write_tar(tmp_path / "bad.tar", [
        ("good1.mp4", mp4), ("good1.txt", b"fine"),
        ("broken.mp4", mp4[: len(mp4) // 3] + b"\0" * 64), ("broken.txt", b"corrupt video"),
        ("mute.mp4", mp4),  # no caption
        ("novideo.txt", b"no video"),
        ("badjson.mp4", mp4), ("badjson.json", b"{not json"),
        ("good2.mp4", mp4), ("good2.txt", b"fine too"),
    ])
    dataset = ShardedVideoTextDataset(shard, **SMALL)
    samples = list(dataset)
    assert [s["captions"] for s in samples] == [["fine"], ["fine too"]]
    assert [s["index"] for s in samples] == [0, 5]  # positions in the shard, bad samples left out
    assert dataset.num_skipped == 4
    paths = [f"{shard}:{k}" for k in ("broken.mp4", "mute", "novideo", "badjson")]
    assert dataset.skipped_paths == paths
    # The next good sample reports what was skipped before it, as the file-based datasets do.
    assert samples[0]["skipped"] == []
    assert [(r["index"], r["path"]) for r in samples[1]["skipped"]] == list(zip(range(1, 5), paths))
    assert "caption" in samples[1]["skipped"][1]["reason"] and "video" in samples[1]["skipped"][2]["reason"]
    again = list(dataset)  # known bad samples are not decoded again, but still reported
    assert dataset.num_skipped == 4 and again[1]["skipped"] == samples[1]["skipped"]

    strict = ShardedVideoTextDataset(shard, **SMALL, on_bad_video="raise")
    with pytest.raises(VideoDecodeError, match=f"{shard}:broken.mp4"):
        list(strict)


def test_damaged_shards_keep_what_precedes_the_damage(tmp_path, data):
    good = data.shards["test"][0]
    cut = tmp_path / "cut.tar"
    with open(good, "rb") as f:
        cut.write_bytes(f.read()[:-6000])  # loses the end of the last sample
    dataset = ShardedVideoTextDataset([str(cut), data.shards["test"][1]], **SMALL)
    samples = list(dataset)
    indices = [s["index"] for s in samples]
    kept = len(indices) - 4
    assert indices == list(range(kept)) + [INDEX_STRIDE + p for p in range(4)]
    assert kept == 3  # every sample before the one the cut falls in, the one just before it too
    assert dataset.num_bad_shards == 1 and dataset.bad_shards == [str(cut)]
    report = samples[kept]["skipped"]  # the next sample read reports the damage, at the first lost index
    assert len(report) == 1 and report[0]["index"] == kept and report[0]["path"] == str(cut)
    with pytest.raises(ShardError, match="cut.tar: unreadable tar from sample 3 on: member 000000003.mp4 is cut short"):
        list(ShardedVideoTextDataset([str(cut)], **SMALL, on_bad_video="raise"))
    # A missing shard: left out with a warning, or an error in raise mode, or when no shard exists.
    missing = str(tmp_path / "missing.tar")
    assert len(list(ShardedVideoTextDataset([missing, good], **SMALL))) == 4
    with pytest.raises(FileNotFoundError, match="1 of 2 shards do not exist"):
        ShardedVideoTextDataset([missing, good], on_bad_video="raise")
    with pytest.raises(FileNotFoundError):
        ShardedVideoTextDataset(missing)


def test_decode_clip_reads_bytes_and_file_objects_like_paths(tmp_path, mp4):
    path = tmp_path / "v.mp4"
    path.write_bytes(mp4)
    from_path = decode_clip(str(path), 4)
    for source in (mp4, io.BytesIO(mp4)):
        clip = decode_clip(source, 4)
        assert torch.equal(clip.frames, from_path.frames) and clip.indices == from_path.indices
    with pytest.raises(BadSampleError, match="shard.tar:x.mp4: cannot open"):
        decode_clip(b"not a video", 4, name="shard.tar:x.mp4")


# ------------------------------------------------------------------------------------------ datamodule


def test_datamodule_batches_workers_and_epochs(data, caplog):
    dm = ShardDataModule(train_shards=str(data.tmp / "train-{000000..000005}.tar"), val_shards=data.shards["val"],
                         test_shards=data.shards["test"], clip=CLIP,
                         loader=LoaderOptions(batch_size=2, num_workers=2), shuffle_buffer=4)
    dm.setup("fit")
    train = dm.train_dataloader()
    assert isinstance(train, ShardLoader) and not train.persistent_workers
    dm.trainer = SimpleNamespace(current_epoch=3)
    batches = list(train)
    assert dm.datasets["train"].epoch == 3
    assert all(b["video"].shape == (2, 4, 3, 32, 32) for b in batches)  # each worker drops its partial batch
    assert len({i for b in batches for i in b["index"].tolist()}) == 2 * len(batches) <= 16
    with caplog.at_level("WARNING"):
        val = dm.val_dataloader()  # one shard: one worker
    assert val.num_workers == 1 and "using 1 DataLoader workers, not 2" in caplog.text
    assert sorted(i for b in val for i in b["index"].tolist()) == list(range(8))
    assert all(b["text"][k] == b["captions"][k][0] for b in val for k in range(len(b["text"])))
    assert ShardDataModule(train_shards=data.shards["train"]).val_dataloader() == []


def test_training_loader_is_seeded_from_the_epoch_under_a_global_seed(data, monkeypatch):
    # A resumed run builds its first epoch's loader before the module reseeds anything: the loader's own
    # generator must already give that epoch's worker seeds, hence the same augmentation draws.
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")

    def first_epoch_clips(epoch, global_stream):
        dm = ShardDataModule(train_shards=data.shards["train"], clip=CLIP,
                             loader=LoaderOptions(batch_size=2, num_workers=2), shuffle_buffer=4)
        dm.trainer = SimpleNamespace(current_epoch=epoch, global_rank=0)
        loader = dm.train_dataloader()
        assert loader.generator.initial_seed() == epoch_seeds(epoch, 0)[3]
        torch.manual_seed(global_stream)  # where the global stream stands does not matter
        return [(b["index"].tolist(), b["video"]) for b in loader]

    first, again = first_epoch_clips(1, global_stream=0), first_epoch_clips(1, global_stream=1)
    assert [i for i, _ in first] == [i for i, _ in again]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(first, again))


class _IndexRecorder(L.LightningModule):
    """Trains a bias on the clips' mean and records the indices of every epoch."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).extend(batch["index"].tolist())
        return (batch["video"].mean() - self.bias) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_epochs_get_new_shard_orders(data, tmp_path):
    dm = ShardDataModule(train_shards=data.shards["train"], clip=CLIP,
                         loader=LoaderOptions(batch_size=1), shuffle_buffer=0)
    model = _IndexRecorder()
    trainer = quiet_trainer(tmp_path, max_epochs=2, devices=1)
    trainer.fit(model, datamodule=dm)
    assert sorted(model.seen[0]) == sorted(model.seen[1]) == sorted(all_train_indices(data))
    assert model.seen[0] != model.seen[1]
    dataset = dm.datasets["train"]
    shard_order = [list(dict.fromkeys(i // INDEX_STRIDE for i in model.seen[e])) for e in (0, 1)]
    assert shard_order == [dataset.shards_for(0, 1, 0, 1, e) for e in (0, 1)]


# ------------------------------------------------------------------------------------------ torch.distributed


def _ddp_reader(rank: int, port: int, shards: list[str], out: str) -> None:
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        dataset = ShardedVideoTextDataset(shards, **SMALL, train=True)  # rank and world size from the group
        seen = {}
        for epoch in (0, 1):  # forked workers inherit the process group
            dataset.set_epoch(epoch)
            loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_video_text,
                                multiprocessing_context="fork")
            seen[epoch] = [i for b in loader for i in b["index"].tolist()]
        # Spawned workers get a pickled copy and no process group: the copy carries the rank.
        copy = pickle.loads(pickle.dumps(dataset))
        seen["pickled"] = (copy.rank, copy.world_size, dataset.rank, dataset.world_size)
        torch.save(seen, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_ranks_come_from_torch_distributed(data, tmp_path):
    # fork: a spawned rank would spend most of this test importing Lightning again.
    run_ranks(_ddp_reader, data.shards["train"], str(tmp_path), start_method="fork")
    seen = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    for epoch in (0, 1):
        a, b = seen[0][epoch], seen[1][epoch]
        assert len(a) + len(b) == 16 and set(a) | set(b) == all_train_indices(data)
    assert [seen[rank]["pickled"] for rank in (0, 1)] == [(0, 2, None, None), (1, 2, None, None)]
