"""The configs compose: each starts from configs/defaults.yaml through ``extends``, names no run folder, and a
config composed after another writes to its own run (``trajtok.cli.with_bases``, ``run_folder``, ``place_run``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import CONFIGS, SMALL_DATA
from jsonargparse import Namespace

from trajtok.cli import RUN, command_line_configs, config_name, main, place_run, run_folder, with_bases
from trajtok.errors import UserError

#: Every config file under configs/, by its path there.
ALL = sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml"))
#: Variants of another config: short overlays by rule.
OVERLAYS = ["clip_cotrain.yaml", "vlm_smollm2.yaml", "vlm_patch.yaml", "probe_linear.yaml", "probe_attentive.yaml",
            *(str(p.relative_to(CONFIGS)) for folder in ("peers", "layouts") for p in (CONFIGS / folder).glob("*.yaml"))]


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_extends_puts_each_base_once_before_its_config(tmp_path):
    base = write(tmp_path / "base.yaml", "trainer:\n  max_epochs: 1\n")
    mid = write(tmp_path / "mid.yaml", "extends: base.yaml\n")
    top = write(tmp_path / "sub/top.yaml", "extends: [../base.yaml, ../mid.yaml]\n")
    argv = ["fit", "--config", top, "--config=" + mid, "--trainer.max_steps=2"]
    resolved = [str(Path(p).resolve()) for p in with_bases(argv)[2::2]]
    assert with_bases(argv)[:2] == ["fit", "--config"] and with_bases(argv)[-1] == "--trainer.max_steps=2"
    # top's chain (base, mid, top); mid again adds nothing but itself, since base and mid were read already.
    assert resolved[:3] == [str(Path(p).resolve()) for p in (base, mid, top)]


def test_extends_errors_name_the_file(tmp_path):
    loop = write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(UserError, match="loops back"):
        with_bases(["--config", loop])
    missing = write(tmp_path / "c.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(UserError, match=r"c\.yaml: extends 'nowhere\.yaml'"):
        with_bases(["--config", missing])


def test_run_folders_are_named_by_the_command_line_configs(tmp_path):
    assert config_name(str(CONFIGS / "clip.yaml")) == "clip"
    assert config_name(str(CONFIGS / "official/segmenter.yaml")) == "official_segmenter"
    assert config_name(write(tmp_path / "exp/clip.yaml", "")) == "exp_clip"  # not configs/clip.yaml's run
    assert run_folder([str(CONFIGS / "clip.yaml"), str(CONFIGS / "peers/vit3d.yaml")]) == "runs/clip+peers_vit3d"
    assert run_folder([]) == "runs/default"


@pytest.mark.parametrize("form", [["--config", "F"], ["--config=F"], ["-c", "F"], ["-cF"]])
def test_every_form_of_the_config_option_reads_its_bases(form, tmp_path):
    base = write(tmp_path / "base.yaml", "")
    top = write(tmp_path / "top.yaml", "extends: base.yaml\n")
    argv = ["fit", *(a.replace("F", top) for a in form), "--x=1"]
    assert command_line_configs(argv) == [top]
    assert with_bases(argv) == ["fit", "--config", str(Path(base).resolve()), "--config", top, "--x=1"]
    with pytest.raises(UserError, match="--extends"):
        with_bases(["fit", "--extends=base.yaml"])


def test_placeholders_are_filled_everywhere_and_extends_dropped():
    files = [str(CONFIGS / "clip_cotrain.yaml"), str(CONFIGS / "layouts/lite.yaml")]
    config = Namespace(extends="clip.yaml", config=[Path("x.yaml")],
                       trainer=Namespace(default_root_dir=None, logger=[Namespace(init_args=Namespace(save_dir=RUN))]),
                       model=Namespace(tokenizer_checkpoint="runs/segmenter${overlays}/checkpoints/last.ckpt"))
    assert place_run(config, files) == "runs/clip_cotrain+layouts_lite"
    assert config.trainer.logger[0].init_args.save_dir == "runs/clip_cotrain+layouts_lite"
    assert config.model.tokenizer_checkpoint == "runs/segmenter+layouts_lite/checkpoints/last.ckpt"
    assert config.extends is None
    given = Namespace(trainer=Namespace(default_root_dir="elsewhere", logger=[{"save_dir": RUN}]))
    assert place_run(given, files) == "elsewhere" and given.trainer.logger[0]["save_dir"] == "elsewhere"


@pytest.mark.parametrize("name", ALL)
def test_no_config_names_a_run_folder(name):
    """Paths of a run derive from one place, so a composed config cannot write into another config's run; a config
    reads another's checkpoint (a previous stage) only outside ``trainer``."""
    config = yaml.safe_load((CONFIGS / name).read_text()) or {}
    trainer = yaml.safe_dump(config.get("trainer", {}))
    assert "default_root_dir" not in trainer and "runs/" not in trainer


@pytest.mark.parametrize("name", OVERLAYS)
def test_variants_are_short_overlays(name):
    lines = [ln for ln in (CONFIGS / name).read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) <= 30, f"{name}: {len(lines)} lines of settings"


@pytest.mark.parametrize("name", [n for n in ALL if "/" not in n and n not in {"defaults.yaml", "pseudo_labels.yaml"}]
                         + ["official/segmenter.yaml", "official/trajvitv2.yaml"])
def test_every_trainable_config_starts_from_the_defaults(name):
    chain = [Path(p).resolve() for p in with_bases(["--config", str(CONFIGS / name)])[1::2]]
    assert chain[0] == (CONFIGS / "defaults.yaml").resolve() and chain[-1] == (CONFIGS / name).resolve()


def test_every_config_is_in_the_index():
    index = (CONFIGS / "README.md").read_text()
    assert not [name for name in ALL if f"`{name}`" not in index]


def test_stage_two_reads_a_checkpoint_that_fits(in_process_print):
    """clip_cotrain.yaml's tokenizer is segmenter.yaml's, so stage 1's checkpoint loads into it."""
    assert in_process_print("clip_cotrain.yaml")["model"]["tokenizer"] == in_process_print("segmenter.yaml")["model"]["tokenizer"]


@pytest.fixture
def in_process_print(cli_in_tmp, capsys):
    def resolved(name: str) -> dict:
        with pytest.raises(SystemExit):
            main(["fit", "--config", str(CONFIGS / name), "--print_config"])
        return yaml.safe_load(capsys.readouterr().out)
    return resolved


@pytest.mark.slow
def test_a_peer_composed_after_clip_writes_its_own_run(cli_in_tmp, cache, monkeypatch):
    monkeypatch.setenv("TRAJTOK_CACHE", str(cache))
    main(["fit", "--config", str(CONFIGS / "clip.yaml"), "--config", str(CONFIGS / "peers/vit3d.yaml"),
          "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
          *SMALL_DATA])
    run = cli_in_tmp / "runs/clip+peers_vit3d"
    best, last = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert last == "last.ckpt" and re.fullmatch(r"epoch00-t2v_r5=[\d.]+\.ckpt", best)
    assert (run / "logs/version_0/metrics.csv").is_file()
    assert [p.name for p in (cli_in_tmp / "runs").iterdir()] == ["clip+peers_vit3d"]  # runs/clip untouched
