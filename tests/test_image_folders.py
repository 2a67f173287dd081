"""Image folders (enas/data/image_folder.py): the layout with its optional valid/ split, the
mistakes it reports, decoding in worker processes, the decoded-image cache, and the class names a
run keeps in classes.txt (through the CLI: a changed class set is exit 2 with one line)."""

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from enas.config import load_config
from enas.console import Reporter
from enas.data.image_folder import cache_folder, load_image_folder
from enas.errors import UserError
from enas.tasks import build_task

ENAS = str(Path(sys.executable).parent / "enas")
JPEG_TAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-jpeg" / "CIFAR-10-images-jpeg.tar.gz"
needs_jpeg = pytest.mark.skipif(not JPEG_TAR.is_file(), reason=f"the CIFAR-10 JPEG archive is not at {JPEG_TAR}")
# Tiny search and retrain sizes (as tests/test_image_search.py), on one CPU thread.
TINY = ["threads=1", "micro.layers=1", "micro.filters=4", "micro.nodes=2", "search.epochs=1", "search.batch_size=16",
        "controller.steps=2", "controller.aggregate=2", "derive.samples=3", "derive.bn_batches=2",
        "retrain.epochs=1", "retrain.batch_size=16", "retrain.steps_per_epoch=4"]


def write_folder(root: Path, counts: dict[str, int], classes: tuple[str, ...] = ("bright", "dark"),
                 size: int = 8, seed: int = 0) -> Path:
    """`counts[split]` PNGs per class: bright or dark noise, so that the classes can be learned."""
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(0, 100, (size, size, 3)) + (150 if label == 0 else 0)
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{index:04d}.png")
    return root


def enas(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ENAS, *args, "--quiet"], capture_output=True, text=True, cwd=cwd, timeout=600)


# --------------------------------------------------------------------------- the layout


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory) -> Path:
    """Five JPEGs per class and split, extracted from the 60,000-image archive."""
    root = tmp_path_factory.mktemp("jpeg")
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(JPEG_TAR) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] not in ("train", "test"):
                continue
            key = (parts[-3], parts[-2])
            if taken.get(key, 0) < 5:
                taken[key] = taken.get(key, 0) + 1
                target = root / parts[-3] / parts[-2] / parts[-1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
            if len(taken) == 20 and all(v == 5 for v in taken.values()):
                break
    return root


@needs_jpeg
def test_the_cifar10_jpeg_folder_layout_loads(jpeg_folder):
    data = load_image_folder(jpeg_folder)
    assert data.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                            "truck")
    assert data.train.shape == (50, 3, 32, 32) and data.test.shape == (50, 3, 32, 32) and data.valid is None
    assert data.test_labels.tolist() == [c for c in range(10) for _ in range(5)]
    assert torch.bincount(data.train_labels).tolist() == [5] * 10
    assert len(set(data.train_labels[-10:].tolist())) >= 5   # a held-out tail is not all trucks
    assert 40 < data.train.float().mean() < 200


def test_image_folder_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="train does not exist; expected train/<class>"):
        load_image_folder(tmp_path)
    write_folder(tmp_path, {"train": 1})
    with pytest.raises(UserError, match="test does not exist"):
        load_image_folder(tmp_path)
    write_folder(tmp_path, {"test": 1})
    assert load_image_folder(tmp_path).train.shape == (2, 3, 8, 8)
    Image.new("L", (9, 9)).save(tmp_path / "train" / "dark" / "1.png")   # grey images are read as RGB
    with pytest.raises(UserError, match=r"1.png is \(9, 9\) pixels, the others \(8, 8\)"):
        load_image_folder(tmp_path)
    (tmp_path / "train" / "dark" / "1.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot decode image .*1.png"):
        load_image_folder(tmp_path)
    (tmp_path / "train" / "dark" / "1.png").unlink()
    Image.new("RGB", (9, 9)).save(tmp_path / "test" / "dark" / "0000.png")
    with pytest.raises(UserError, match=r"test/dark/0000.png is \(9, 9\) pixels, the others \(8, 8\)"):
        load_image_folder(tmp_path)
    write_folder(tmp_path, {"test": 1})
    (tmp_path / "valid" / "other").mkdir(parents=True)
    with pytest.raises(UserError, match=r"valid has class folders \['other'\], expected a subset of"):
        load_image_folder(tmp_path)
    (tmp_path / "valid" / "bright").mkdir()
    (tmp_path / "valid" / "other").rmdir()
    with pytest.raises(UserError, match="valid holds no images"):
        load_image_folder(tmp_path)


def test_a_valid_folder_is_what_search_validates_on_and_retrain_picks_its_epoch_by(tmp_path):
    root = write_folder(tmp_path / "data", {"train": 20, "valid": 6, "test": 5})
    data = load_image_folder(root)
    assert [len(data.train), len(data.valid), len(data.test)] == [40, 12, 10]
    assert data.valid_labels.tolist() == [0] * 6 + [1] * 6
    config = load_config([], ["space=micro", "data.name=image_folder", f"data.root={root}", "data.cache=none",
                              "data.valid_fraction=0.25", *TINY])
    search, retrain = build_task(config, config.search), build_task(config, config.retrain)
    for task in (search, retrain):   # both train on all 40 training images; valid/ is never trained on
        assert [len(task.images[s]) for s in ("train", "valid", "test")] == [40, 12, 10]
        assert torch.equal(task.images["valid"], data.valid) and not task.valid_is_test
    (root / "valid" / "bright").rename(tmp_path / "aside")
    (root / "valid" / "dark").rename(tmp_path / "aside2")
    (root / "valid").rmdir()
    search, retrain = build_task(config, config.search), build_task(config, config.retrain)
    assert [len(search.images[s]) for s in ("train", "valid", "test")] == [30, 10, 10]   # the last quarter held out
    assert [len(retrain.images[s]) for s in ("train", "valid", "test")] == [40, 10, 10] and retrain.valid_is_test


# --------------------------------------------------------------------------- decoding and the cache


def test_worker_processes_decode_what_one_process_decodes(tmp_path):
    root = write_folder(tmp_path / "data", {"train": 300, "valid": 20, "test": 50}, classes=("a", "b", "c"))
    alone, together = load_image_folder(root, workers=1), load_image_folder(root, workers=2)
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(alone, split), getattr(together, split))
        assert torch.equal(getattr(alone, f"{split}_labels"), getattr(together, f"{split}_labels"))
    (root / "test" / "c" / "0049.png").write_bytes(b"broken")   # in a worker's chunk: still one line
    with pytest.raises(UserError, match=r"^cannot decode image .*0049.png \(.*\)$"):
        load_image_folder(root, workers=2)


def test_the_cache_is_read_while_the_files_are_unchanged_and_rebuilt_when_one_changes(tmp_path):
    root, cache = write_folder(tmp_path / "data", {"train": 4, "test": 2}), tmp_path / "cache"
    first = load_image_folder(root, cache)
    [saved] = cache.glob("image_folder-*.pt")
    assert not list(cache.glob("*.tmp"))
    assert torch.equal(load_image_folder(root, cache).train, first.train)
    # Same size and modification time, other pixels: only a cache read gives back the old ones.
    # (An uncompressed BMP keeps its size whatever its pixels.)
    path = root / "train" / "bright" / "0004.bmp"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)
    first = load_image_folder(root, cache)
    stat = path.stat()
    Image.new("RGB", (8, 8), (200, 100, 0)).save(path)
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert torch.equal(load_image_folder(root, cache).train, first.train)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))   # touched: decoded again
    rebuilt = load_image_folder(root, cache)
    assert not torch.equal(rebuilt.train, first.train) and rebuilt.train.shape == first.train.shape
    write_folder(root, {"train": 5})   # a file more per class: decoded again
    assert len(load_image_folder(root, cache).train) == 11 and list(cache.glob("image_folder-*.pt")) == [saved]
    saved.write_bytes(b"damaged")      # unreadable: decoded again and replaced
    assert len(load_image_folder(root, cache).train) == 11
    assert torch.load(saved, weights_only=True)["version"] == 1


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path, capsys):
    root = write_folder(tmp_path / "data", {"train": 2, "test": 1})
    (tmp_path / "taken").write_text("a file where the cache folder would be")
    data = load_image_folder(root, tmp_path / "taken")
    assert len(data.train) == 4
    assert "warning: cannot write the image cache" in capsys.readouterr().err


def test_data_cache_names_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder("") == tmp_path / "enas"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_folder("") == Path.home() / ".cache" / "enas"
    assert cache_folder("none") is None
    assert cache_folder("~/images") == Path.home() / "images"


def test_a_long_decoding_shows_a_progress_bar_unless_quiet(tmp_path):
    root = write_folder(tmp_path / "data", {"train": 1000, "test": 1}, size=4)
    shown, quiet = Reporter(), Reporter(quiet=True)
    for reporter in (shown, quiet):
        reporter.console = Console(file=io.StringIO(), width=100, quiet=reporter.quiet)
        load_image_folder(root, reporter=reporter, workers=1)
    assert "decoding the 2,002 images of" in shown.console.file.getvalue()
    assert quiet.console.file.getvalue() == ""


# --------------------------------------------------------------------------- classes.txt


def test_a_run_keeps_its_classes_and_a_changed_class_set_is_exit_2(tmp_path):
    root = write_folder(tmp_path / "data", {"train": 24, "valid": 8, "test": 8})
    run, data = tmp_path / "run", ["data.name=image_folder", f"data.root={root}", f"data.cache={tmp_path / 'cache'}"]
    for command in (["search", "-o", str(run), "space=micro", *data, *TINY], ["derive", str(run)],
                    ["retrain", str(run)]):
        result = enas(*command, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (run / "classes.txt").read_text() == "bright\ndark\n"
    assert (run / "retrain" / "classes.txt").read_text() == "bright\ndark\n"
    for split in ("train", "valid", "test"):
        (root / split / "dark").rename(root / split / "night")
    result = enas("derive", str(run), cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "other classes than" in lines[0] and str(run / "classes.txt") in lines[0]
    # A retrain in a folder of its own may train the architecture on other classes.
    result = enas("retrain", str(run), "-o", str(tmp_path / "other"), *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "other" / "classes.txt").read_text() == "bright\nnight\n"


def test_where_the_cache_lies_is_no_part_of_what_a_resume_or_a_panel_keeps(tmp_path):
    from enas.commands.standalone import result_folder
    from enas.run.resume import check_resume_config
    from enas.spaces import from_official
    from enas.spaces.published import PUBLISHED

    data = ["space=micro", "data.name=image_folder", f"data.root={tmp_path}"]
    saved, moved = load_config([], data), load_config([], [*data, "data.cache=none"])
    check_resume_config(saved, moved)
    with pytest.raises(UserError, match="--resume cannot change data"):
        check_resume_config(saved, load_config([], [*data, "data.root=elsewhere"]))
    arch = from_official(PUBLISHED["enas_micro_cifar10"][1], "micro")
    assert result_folder(saved, arch, tmp_path) == result_folder(moved, arch, tmp_path)
