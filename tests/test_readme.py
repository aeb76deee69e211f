"""Every snippet of the README works as written.

Python blocks run, in order, in a folder holding what they name: ``data/leaves`` prepared
from generated rosettes, ``photos/plant001.png``, and a Matterport-format COCO file found the
way a user's is found (``LEAFSEG_COCO_WEIGHTS``), and ``configs/`` as in a checkout. Only the scale shrinks: every config the
snippets build (``LeafConfig()``, ``load_config(...)``) gets a tiny backbone, 64 px images and
one step an epoch, so the seed post's 9 + 79 epochs take a minute on a CPU. Command lines in
``bash`` blocks are parsed by the command they call, so an option that does not exist, a
misspelt one or a bad value fails here.
"""
import re
import shlex
import shutil
from pathlib import Path

import pytest

import leafseg.config
from leafseg.cli import COMMANDS
from leafseg.data.prepare import prepare_dataset
from leafseg.synth.rosettes import write_dataset

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Pages whose command lines are checked like the README's.
GUIDES = ("README.md", "docs/TRAINING.md", "docs/BENCHMARKS.md", "docs/SMALL_DATA.md", "docs/ADAPT.md")
# What "small steps" means for the configs the snippets build.
SMALL = dict(BACKBONE="resnet18", BACKBONE_WIDTH=0.25, IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64,
             TOP_DOWN_PYRAMID_SIZE=32, RPN_CONV_CHANNELS=32, FPN_CLASSIF_FC_LAYERS_SIZE=64,
             MASK_HEAD_CHANNELS=16, PRE_NMS_LIMIT=300, POST_NMS_ROIS_TRAINING=64, POST_NMS_ROIS_INFERENCE=32,
             RPN_TRAIN_ANCHORS_PER_IMAGE=32, TRAIN_ROIS_PER_IMAGE=16, MAX_GT_INSTANCES=20, DETECTION_MAX_INSTANCES=20,
             MINI_MASK_SHAPE=(28, 28), STEPS_PER_EPOCH=1, VALIDATION_STEPS=1, IMAGES_PER_GPU=1)
SCRIPTS = {"prepare_masks.py": "prepare", "make_synthetic.py": "synth", "train.py": "train", "evaluate.py": "evaluate",
           "predict.py": "predict", "track.py": "track", "export.py": "export", "demo.py": "demo",
           "recipe.py": "recipe", "adapt.py": "adapt"}


def blocks(language, text=README):
    """(first line number, text) of each fenced block of ``language`` in ``text``."""
    found = []
    for match in re.finditer(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M):
        found.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return found


def commands(pages=GUIDES):
    """("page:line", argv) of each leafseg command line in the bash blocks of ``pages``, and of
    each inline ``leafseg ...`` with options in their text."""
    lines = []
    for page in pages:
        lines += [(f"{page}:{line}", argv) for line, argv in page_commands((ROOT / page).read_text(encoding="utf-8"))]
    return lines


def page_commands(page):
    """(line number, argv) of each leafseg command line of one page's text."""
    lines = []
    spans = [(page.count("\n", 0, m.start()) + 1, m.group(1))
             for m in re.finditer(r"`(leafseg [^`]*--[^`]*)`", page)]
    for first, text in blocks("bash", page) + spans:
        joined = re.sub(r"\\\n\s*", " ", text)
        for offset, line in enumerate(joined.splitlines()):
            line = line.split(" #")[0].strip()
            if line.startswith("# "):
                line = ""
            words = shlex.split(line) if line else []
            if words[:1] == ["leafseg"] and words[1:2] in (["--verbose"], ["-v"]):
                words = ["leafseg", *words[2:]]   # leafseg --verbose COMMAND ...
            if words[:1] == ["leafseg"] and len(words) > 1 and words[1].islower():
                lines.append((first + offset, words[1:]))
            elif len(words) > 1 and words[0] == "python" and words[1].startswith("scripts/"):
                script = words[1].split("/", 1)[1]
                if script in SCRIPTS:
                    lines.append((first + offset, [SCRIPTS[script], *words[2:]]))
    return lines


def test_the_readme_has_the_snippets_this_file_checks():
    assert len(blocks("python")) >= 3
    assert {argv[0] for _, argv in commands(["README.md"])} >= {"prepare", "synth", "train", "evaluate", "predict",
                                                               "export"}
    assert any(argv[0] == "train" for _, argv in commands(["docs/TRAINING.md"]))


@pytest.mark.parametrize("line,argv", commands(), ids=lambda value: value if isinstance(value, str) else None)
def test_command_lines_parse(line, argv):
    import importlib

    command, rest = argv[0], argv[1:]
    assert command in COMMANDS, f"{line}: no command {command!r}"
    if rest in (["--help"], ["-h"]) or any("..." in word for word in rest):
        return
    module = importlib.import_module(COMMANDS[command][0])
    try:
        module.build_parser().parse_args(rest)
    except SystemExit as error:
        pytest.fail(f"{line}: `leafseg {' '.join(argv)}` does not parse (exit {error.code})")


@pytest.fixture
def readme_world(tmp_path, monkeypatch):
    """A working folder with what the snippets name, and configs at a test's scale."""
    import keras

    from mrcnn.model import MaskRCNN
    from mrcnn.weights import save_legacy_h5

    write_dataset(tmp_path / "rosettes", 10, seed=3, size=96)
    prepare_dataset(tmp_path / "rosettes", tmp_path / "data" / "leaves", val_fraction=0.3, seed=0)
    (tmp_path / "photos").mkdir()
    shutil.copytree(ROOT / "configs", tmp_path / "configs")   # the snippets run in a checkout
    shutil.copy(sorted((tmp_path / "rosettes").glob("*_rgb.png"))[0], tmp_path / "photos" / "plant001.png")

    real_load_config, real_leaf_config = leafseg.config.load_config, leafseg.config.LeafConfig

    class SmallLeafConfig(real_leaf_config):
        pass

    for name, value in SMALL.items():
        setattr(SmallLeafConfig, name, value)
    monkeypatch.setattr(leafseg.config, "LeafConfig", SmallLeafConfig)
    monkeypatch.setattr(leafseg.config, "load_config",
                        lambda name="leaf_r101", **overrides: real_load_config(name, **{**SMALL, **overrides}))

    # Matterport's COCO file: 81 classes, written in its Keras 2 HDF5 layout.
    keras.utils.set_random_seed(0)
    coco = MaskRCNN("inference", SmallLeafConfig(NUM_CLASSES=81), tmp_path / "unused")
    save_legacy_h5(coco.keras_model, tmp_path / "mask_rcnn_coco.h5")
    monkeypatch.setenv("LEAFSEG_COCO_WEIGHTS", str(tmp_path / "mask_rcnn_coco.h5"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_python_snippets_run_as_written(readme_world, capsys):
    for first, text in blocks("python"):
        try:
            exec(compile(text, f"README.md:{first}", "exec"), {"__name__": "readme"})
        except Exception as error:  # the README's line, not this file's, is what to fix
            raise AssertionError(f"the README's Python block at line {first} failed: {error!r}") from error
    printed = capsys.readouterr().out
    assert re.search(r"^\d+ leaves$", printed, flags=re.M), printed[-2000:]
    # The seed recipe's two stages ended at epoch 79; the CPU snippet saved its weights.
    runs = sorted((readme_world / "logs").iterdir())
    assert any(run.glob("*_0079.weights.h5") for run in runs)
    assert (readme_world / "leaves.weights.h5").is_file()
