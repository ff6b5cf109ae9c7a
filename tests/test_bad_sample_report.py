"""BadSampleReport inside real Lightning runs on a datamodule with bad videos, with DataLoader workers: each bad
sample counted once per epoch, logged, and named with its annotation row; and the "raise" policy."""

from __future__ import annotations

import warnings
from pathlib import Path

import av
import lightning as L
import numpy as np
import pytest
import torch
from builders import quiet_trainer, tiny_module, tiny_tokenizer

from datamodules.bad_samples import MissingFilesError, WorkerUserError
from datamodules.options import ClipOptions, LoaderOptions
from datamodules.video import VideoDecodeError
from datamodules.video_text import VideoTextDataModule
from trajtok.callbacks import BadSampleReport, NonFiniteSteps, describe_skipped
from trajtok.errors import is_user_error
from trajtok.seeding import EpochSeeding


def write_video(path, num_frames: int = 4, size: int = 16) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            frame = np.full((size, size, 3), 20 + 10 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """train.jsonl: 8 rows, rows 2, 5 and 6 bad (missing, garbage, empty file); val.jsonl: 4 rows, row 3 bad."""
    folder = tmp_path_factory.mktemp("bad_data")
    for i in range(8):
        write_video(folder / f"v{i}.mp4")
    (folder / "garbage.mp4").write_bytes(b"\x17" * 2000)
    (folder / "empty.mp4").write_bytes(b"")
    train = ["v0.mp4", "missing.mp4", "v2.mp4", "v3.mp4", "garbage.mp4", "empty.mp4", "v6.mp4", "v7.mp4"]
    val = ["v0.mp4", "v1.mp4", "gone.mp4", "v3.mp4"]
    for name, videos in [("train", train), ("val", val)]:
        (folder / f"{name}.jsonl").write_text(
            "".join(f'{{"video": "{v}", "caption": "clip {i}"}}\n' for i, v in enumerate(videos)), encoding="utf-8"
        )
    return folder


def datamodule(folder: Path, image_size: int = 16, num_workers: int = 2, **kwargs) -> VideoTextDataModule:
    return VideoTextDataModule(train_annotations=str(folder / "train.jsonl"), val_annotations=str(folder / "val.jsonl"),
                               clip=ClipOptions(num_frames=2, image_size=image_size),
                               loader=LoaderOptions(batch_size=2, num_workers=num_workers), **kwargs)


class MeanPixel(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        if "video" not in batch:
            return None  # every sample of the batch was skipped
        return self.layer(batch["video"].mean(dim=(1, 3, 4))).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        if "video" not in batch:
            return
        self.log("val/loss", self.layer(batch["video"].mean(dim=(1, 3, 4))).pow(2).mean(), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_each_bad_sample_is_counted_once_per_epoch_across_workers(data, tmp_path):
    report = BadSampleReport(max_reported=2)
    fit = quiet_trainer(tmp_path, max_epochs=2, callbacks=[report], num_sanity_val_steps=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit.fit(MeanPixel(), datamodule(data))
    # Every train sample is drawn each epoch (8 samples, batches of 2): all three bad ones are met, some of
    # them more than once, in two worker processes; each counts once.
    assert [(epoch, count) for epoch, count, _ in report.history["train"]] == [(0, 3), (1, 3)]
    assert [(epoch, count) for epoch, count, _ in report.history["val"]] == [(0, 1), (1, 1)]
    assert fit.callback_metrics["train/skipped_samples"].item() == 3
    assert fit.callback_metrics["val/skipped_samples"].item() == 1
    first = report.history["train"][0][2]
    assert [r["index"] for r in first] == [1, 4]  # max_reported=2, in index order
    assert first[0] == {"index": 1, "path": str(data / "missing.mp4"), "reason": "file not found",
                        "origin": f"{data / 'train.jsonl'}, row 2"}
    messages = [str(w.message) for w in caught if "unusable sample" in str(w.message)]
    assert any(m.startswith("train epoch 1: 3 unusable sample(s) skipped") and "... (1 more)" in m for m in messages)
    assert any(f"sample 1 ({data / 'train.jsonl'}, row 2): {data / 'missing.mp4'}: file not found" in m
               for m in messages)
    assert any(m.startswith("val epoch 0: 1 unusable sample(s) skipped") and "gone.mp4" in m for m in messages)


def test_a_clean_epoch_logs_zero_and_does_not_warn(data, tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(f'{{"video": "{data}/v{i}.mp4", "caption": "c"}}\n' for i in range(3)), encoding="utf-8")
    report = BadSampleReport()
    run = quiet_trainer(tmp_path, callbacks=[report])
    module = MeanPixel()
    module.test_step = module.validation_step
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.test(module, VideoTextDataModule(test_annotations=str(clean), clip=ClipOptions(num_frames=2, image_size=16)))
    assert report.history["test"] == [(0, 0, [])]
    assert run.logged_metrics["test/skipped_samples"].item() == 0
    assert not [w for w in caught if "unusable sample" in str(w.message)]


def test_describe_and_arguments():
    assert describe_skipped({"index": 4, "path": "/d/a.mp4", "reason": "no video stream", "origin": None}) == (
        "sample 4: /d/a.mp4: no video stream")
    with pytest.raises(ValueError, match="max_reported"):
        BadSampleReport(max_reported=-1)


def test_raise_policy_fails_the_run_naming_file_and_row(data, tmp_path):
    # A missing file stops the run before its first batch.
    with pytest.raises(MissingFilesError, match=r"gone.mp4 \(.*val.jsonl, row 3\)"):
        quiet_trainer(tmp_path).validate(MeanPixel(), datamodule(data, on_bad_video="raise", num_workers=0))
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text(f'{{"video": "{data}/v0.mp4", "caption": "a"}}\n{{"video": "{data}/garbage.mp4", "caption": "b"}}\n',
                       encoding="utf-8")
    module = VideoTextDataModule(val_annotations=str(corrupt), clip=ClipOptions(num_frames=2, image_size=16),
                                 loader=LoaderOptions(batch_size=2, num_workers=0), on_bad_video="raise")
    with pytest.raises(VideoDecodeError, match=r"garbage.mp4: .*\(sample of .*corrupt.jsonl, row 2\)"):
        quiet_trainer(tmp_path).validate(MeanPixel(), module)
    # From a worker process: the same message alone, a user error (not PyTorch's RuntimeError of the worker's
    # traceback, which the trajtok command would print whole); the worker's traceback is a note.
    module = VideoTextDataModule(val_annotations=str(corrupt), clip=ClipOptions(num_frames=2, image_size=16),
                                 loader=LoaderOptions(batch_size=2, num_workers=1), on_bad_video="raise")
    with pytest.raises(WorkerUserError) as raised:
        quiet_trainer(tmp_path).validate(MeanPixel(), module)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{data / 'garbage.mp4'}: ")
    assert message.endswith(f"(sample of {corrupt}, row 2)") and is_user_error(raised.value)
    assert "VideoDecodeError" in raised.value.__notes__[0] and "DataLoader worker" in raised.value.__notes__[0]


def test_trajtok_module_reports_by_default(data, tmp_path):
    torch.manual_seed(0)
    module = tiny_module(tiny_tokenizer(num_slots=4))
    assert [type(c) for c in module.configure_callbacks()] == [EpochSeeding, BadSampleReport, NonFiniteSteps]
    run = quiet_trainer(tmp_path)
    run.validate(module, datamodule(data, image_size=32))
    assert run.callback_metrics["val/skipped_samples"].item() == 1
    assert sum(isinstance(c, BadSampleReport) for c in run.callbacks) == 1

    own = BadSampleReport(max_reported=1, warn=False)  # a configured one is kept, not replaced or doubled
    run = quiet_trainer(tmp_path, callbacks=[own])
    run.validate(module, datamodule(data, image_size=32, num_workers=0))
    assert [c for c in run.callbacks if isinstance(c, BadSampleReport)] == [own]
    assert own.history["val"][0][1] == 1


def test_a_batch_shrinks_by_its_skipped_samples_and_an_all_skipped_batch_is_no_step(data, tmp_path):
    """Skipped samples leave their batch (no other sample is repeated in their place: in a contrastive batch
    that would be a false negative); a batch with nothing left is skipped by the module and counted."""
    module = tiny_module(tiny_tokenizer(num_slots=4))
    seen = []

    class Indices(L.Callback):
        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            seen.append(batch["index"].tolist() if "index" in batch else None)

    quiet_trainer(tmp_path, callbacks=[Indices()]).validate(module, datamodule(data, image_size=32, num_workers=0))
    assert seen == [[0, 1], [3]]  # val rows: v0, v1, gone, v3 in batches of 2
    before = [p.detach().clone() for p in module.parameters()]
    assert module.training_step({"skipped": [{"index": 2, "path": "gone.mp4", "reason": "file not found",
                                              "origin": None}]}, 0) is None
    assert module.empty_batches == 1
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
