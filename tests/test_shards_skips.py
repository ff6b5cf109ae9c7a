"""Tar shards' bad samples inside real Lightning runs (``TrajTokModule`` and ``ShardDataModule``, DataLoader workers):
every skip is counted once, also the last thing a worker reads and what rode on a batch that ``drop_last`` drops; a
key repeated in a shard is skipped and counted, not trained twice; a cut tar keeps every whole sample before the cut
and loses, silently never, the sample the cut falls in and the rest."""

from __future__ import annotations

import gzip
import io
import tarfile
import warnings
from pathlib import Path

import builders
import lightning as L
import numpy as np
import pytest
from builders import quiet_trainer, tiny_tokenizer
from test_data_shards import write_tar

from datamodules.options import ClipOptions, LoaderOptions
from datamodules.shards import (
    INDEX_STRIDE,
    SampleMembersError,
    ShardDataModule,
    ShardError,
    iterate_shard,
    write_shards,
)
from datamodules.synthetic import write_mp4
from trajtok.callbacks import BadSampleReport
from trajtok.module import TrajTokModule

CLIP = ClipOptions(num_frames=2, image_size=32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """good.mp4 (4 frames of 16 x 16) and broken.mp4 (no video at all)."""
    folder = tmp_path_factory.mktemp("videos")
    write_mp4(str(folder / "good.mp4"), np.stack([np.full((16, 16, 3), 40 * t, np.uint8) for t in range(4)]), fps=4)
    (folder / "broken.mp4").write_bytes(b"\x17" * 500)
    return folder


def tiny_module() -> TrajTokModule:
    return builders.tiny_module(tiny_tokenizer(seed=0, num_slots=4))


class Indices(L.Callback):
    """The sample indices of every batch the module gets, per stage."""

    def __init__(self):
        self.seen: dict[str, list[int]] = {"train": [], "val": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen["train"] += batch["index"].tolist() if "index" in batch else []

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen["val"] += batch["index"].tolist() if "index" in batch else []


def trainer(tmp_path, callbacks) -> L.Trainer:
    return quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0, callbacks=callbacks)


def test_skips_at_the_end_of_each_worker_and_in_a_dropped_batch_are_counted(videos, tmp_path):
    # 4 shards of good, bad, good, bad; 2 workers read 2 shards each, in batches of 3 with drop_last. A worker's
    # samples: 3 make a batch, its 4th (carrying the report of the bad sample before it) is a partial batch that
    # drop_last drops, and its last bad sample is the last thing it reads: both reports are counted all the same.
    good, bad = str(videos / "good.mp4"), str(videos / "broken.mp4")
    entries = [(f"s{n}k{i}", bad if i % 2 else good, f"clip {n}.{i}") for n in range(4) for i in range(4)]
    shards = write_shards(entries, str(tmp_path / "train-%02d.tar"), samples_per_shard=4)
    data = ShardDataModule(train_shards=shards, clip=CLIP, loader=LoaderOptions(batch_size=3, num_workers=2),
                           shuffle_buffer=0)
    report, indices = BadSampleReport(max_reported=8), Indices()
    run = trainer(tmp_path, [report, indices])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.fit(tiny_module(), data)
    bad_indices = [n * INDEX_STRIDE + i for n in range(4) for i in (1, 3)]
    assert [r["index"] for r in report.history["train"][0][2]] == bad_indices
    assert run.callback_metrics["train/skipped_samples"].item() == 8
    assert any("train epoch 0: 8 unusable sample(s) skipped" in str(w.message) for w in caught)
    # Each worker trained one whole batch of good samples; its dropped 4th sample was not trained, and the reports
    # that came after its last whole batch came in a batch of their own, which the module skips (an empty batch).
    assert len(indices.seen["train"]) == 6 and all(i % INDEX_STRIDE in (0, 2) for i in indices.seen["train"])
    assert run.callback_metrics["train/empty_batches"].item() == 2


def test_a_shard_cut_at_its_end_keeps_the_sample_before_the_cut_and_counts_the_lost_one(videos, tmp_path):
    mp4 = (videos / "good.mp4").read_bytes()
    members = [(f"k{i}.{ext}", data) for i in range(3) for ext, data in (("mp4", mp4), ("txt", b"clip %d" % i))]
    whole = write_tar(tmp_path / "whole.tar", members)
    with tarfile.open(whole) as tar:
        cut_at = tar.getmember("k2.mp4").offset_data + 100  # inside the last sample's video
    cut = tmp_path / "val-00.tar"
    cut.write_bytes(Path(whole).read_bytes()[:cut_at])
    other = write_tar(tmp_path / "val-01.tar", members[:4])
    data = ShardDataModule(train_shards=[other], val_shards=[str(cut), other], clip=CLIP,
                           loader=LoaderOptions(batch_size=2, num_workers=2))
    report, indices = BadSampleReport(), Indices()
    run = trainer(tmp_path, [report, indices])
    run.validate(tiny_module(), data)
    # The damage is the last thing its worker reads: counted, under the index of the first sample lost.
    assert sorted(indices.seen["val"]) == [0, 1, INDEX_STRIDE, INDEX_STRIDE + 1]
    assert run.callback_metrics["val/skipped_samples"].item() == 1
    (lost,) = report.history["val"][0][2]
    assert lost["index"] == 2 and lost["path"] == str(cut)
    assert lost["reason"].startswith("unreadable tar from sample 2 on: member k2.mp4 is cut short or corrupt")


def test_a_key_repeated_in_a_shard_is_skipped_and_counted_not_trained_twice(videos, tmp_path):
    mp4 = (videos / "good.mp4").read_bytes()
    shard = write_tar(tmp_path / "dup.tar", [
        ("a.mp4", mp4), ("a.txt", b"first a"), ("b.mp4", mp4), ("b.txt", b"b"),
        ("a.mp4", mp4), ("a.txt", b"second a"), ("c.mp4", mp4), ("c.txt", b"c"),
    ])
    data = ShardDataModule(train_shards=[shard], val_shards=[shard], clip=CLIP, loader=LoaderOptions(batch_size=1))
    report, indices = BadSampleReport(), Indices()
    run = trainer(tmp_path, [report, indices])
    run.fit(tiny_module(), data)
    assert sorted(indices.seen["train"]) == sorted(indices.seen["val"]) == [0, 1, 3]
    assert run.callback_metrics["train/skipped_samples"].item() == run.callback_metrics["val/skipped_samples"].item() == 1
    (repeat,) = report.history["train"][0][2]
    assert repeat["index"] == 2 and repeat["path"] == f"{shard}:a"
    assert repeat["reason"] == "key 'a' is repeated in its shard (first at position 0); the repeat is left out"
    strict = ShardDataModule(val_shards=[shard], clip=CLIP, on_bad_video="raise")
    with pytest.raises(SampleMembersError, match=f"^{shard}:a: key 'a' is repeated"):
        trainer(tmp_path, []).validate(tiny_module(), strict)


def sample_ends(raw: bytes) -> list[int]:
    """Per sample of a plain tar, where the header after its last member starts (the next sample's, or the
    end-of-archive block)."""
    ends: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for info in tar:
            ends[info.name.split(".")[0]] = info.offset_data + -(-info.size // 512) * 512
    return list(ends.values())


def read(path: str) -> tuple[list[tuple[str, list[str]]], ShardError | None]:
    samples = []
    try:
        for sample in iterate_shard(path):  # a damaged shard raises mid-way: what came before is kept
            samples.append((sample.key, sorted(sample.files)))  # noqa: PERF401
        return samples, None
    except ShardError as e:
        return samples, e


def test_a_cut_anywhere_loses_exactly_the_sample_it_falls_in_and_the_rest(tmp_path):
    # Samples of three members, small ones too: Python's tarfile stops silently at a cut inside a header, so cuts
    # at and around the start of every block are tried (a header, member data, padding, the end-of-archive blocks).
    # A sample is kept whole once the cut lies past its members and past the first byte of the next header (at a
    # cut exactly between two members nothing tells whether the sample had more of them).
    members = [(f"{k}.{ext}", bytes([65 + i]) * size) for i, k in enumerate("abc")
               for ext, size in (("mp4", 700), ("txt", 30), ("json", 40))]
    raw = Path(write_tar(tmp_path / "whole.tar", members)).read_bytes()
    ends = sample_ends(raw)
    path = tmp_path / "cut.tar"
    cuts = sorted({block + step for block in range(0, len(raw), 512) for step in (0, 1, 5, 100, 101, 511)})
    for cut in [*cuts, len(raw)]:
        path.write_bytes(raw[:cut])
        samples, error = read(str(path))
        kept = sum(cut > end for end in ends)
        assert [key for key, _ in samples] == list("abc"[:kept]), cut
        assert all(files == ["json", "mp4", "txt"] for _, files in samples), cut
        assert (error is None) == (kept == 3), cut
        if error is not None:
            assert error.position == kept and str(error).startswith(f"{path}: unreadable tar from sample {kept} on: ")
    # Compressed: no cut yields a part of a sample, or ends short without an error.
    packed = gzip.compress(raw, mtime=0)
    path = tmp_path / "cut.tar.gz"
    for cut in range(len(packed) + 1):
        path.write_bytes(packed[:cut])
        samples, error = read(str(path))
        assert all(files == ["json", "mp4", "txt"] for _, files in samples), cut
        assert error is not None or len(samples) == 3, cut
