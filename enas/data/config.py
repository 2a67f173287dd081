"""The `data` config section: which dataset a run reads and how, and the checks of how its keys go together."""

from __future__ import annotations

from dataclasses import dataclass

from enas.fields import option

TEXT_DATASETS = ("builtin_text", "text")
IMAGE_DATASETS = ("builtin_images", "cifar10", "image_folder", "torchvision")
TORCHVISION_SETS = ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "SVHN")  # data.dataset
SPLITS = ("tail", "nb201")   # data.split
# Seeds are offset and multiplied (by 1,000,003 for random BPTT windows) before torch.Generator,
# which takes 64 bits, sees them: 32 bits leave room, and are what numpy accepts too.
MAX_SEED = 2**32 - 1


@dataclass
class DataConfig:
    name: str = option("builtin_text", "dataset: builtin_text (generated) or text (a PTB-format folder); "
                     "images: builtin_images (generated), cifar10 (cifar-10-batches-py, read directly), image_folder "
                     "(train/<class>/*, optional valid/<class>/*, test/<class>/*) or torchvision (data.dataset, "
                     "from torchvision's files)", choices=TEXT_DATASETS + IMAGE_DATASETS)
    root: str = option("", "folder of the dataset when name=text (ptb.train.txt, ... or train.txt, ...), "
                     "cifar10 (data_batch_1..5, test_batch), image_folder (train/, valid/, test/) or torchvision "
                     "(the root torchvision is given: ROOT/MNIST/raw/, ROOT/cifar-10-batches-py/, ...)")
    dataset: str = option("CIFAR10", "torchvision: the set read from data.root with torchvision's own dataset class "
                          "and download=False (MNIST and FashionMNIST: 1 channel, 28 x 28; SVHN needs scipy)",
                          choices=TORCHVISION_SETS)
    cache: str = option("", "image_folder: folder of the decoded-image cache, one file per dataset folder, rebuilt "
                        "when a file is added, removed or changed; \"\" is the per-user cache ($XDG_CACHE_HOME/enas, "
                        "else ~/.cache/enas), none turns it off")
    vocab_size: int = option(32, "builtin_text: vocabulary size", min=4, max=512)
    max_vocab: int = option(0, "text: keep the N most frequent training words (<eos> and <unk> among them); every "
                            "other word becomes <unk>; 0 keeps them all", min=0)
    min_count: int = option(1, "text: training words seen fewer times become <unk>", min=1)
    unit: str = option("word", "text: what a token is: word (whitespace-separated) or char (each character, with _ "
                       "between words and <eos> ending each line: Mikolov's character-level PTB from the word-level "
                       "files); char scores are also given in bits per character", choices=("word", "char"))
    branching: int = option(4, "builtin_text: preferred successors per two-token context", min=1)
    train_tokens: int = option(60_000, "builtin_text: tokens in the train split", min=1000)
    valid_tokens: int = option(8_000, "builtin_text: tokens in the valid split", min=100)
    test_tokens: int = option(8_000, "builtin_text: tokens in the test split", min=100)
    seed: int = option(1234, "builtin_text, builtin_images: seed of the generated data "
                     "(independent of the run seed)", min=0, max=MAX_SEED)
    valid_fraction: float = option(0.1, "images: share of the training set held out for validation in search "
                                 "(CIFAR-10: the last 5,000 of 50,000); retrain trains on all of it. Unused when "
                                 "an image folder has valid/: search validates on it",
                                 min=0.0, max=0.5)
    split: str = option("tail", "images, search: how the training set is split into train and valid: tail holds "
                        "out its last valid_fraction (CIFAR-10: the last 5,000 of 50,000, as the official ENAS "
                        "code); nb201 permutes the training images at random with a fixed seed (201, whatever the "
                        "run seed) and trains on the first half, validates on the second (CIFAR-10: 25,000 / "
                        "25,000 like NAS-Bench-201's search; a random half, not the benchmark's own list), "
                        "valid_fraction unused. Image folders permute in their own (seeded) order, so their halves "
                        "are other images than the python batches'. Retrain trains on all of it; the test images "
                        "are in neither half", choices=SPLITS)
    image_size: int = option(16, "builtin_images: height and width in pixels", min=8, max=64)
    classes: int = option(4, "builtin_images: number of classes (patterns: stripes, columns, checker, dots, "
                        "ring, ...)", min=2, max=10)
    train_images: int = option(2000, "builtin_images: images in the train split (search holds out valid_fraction)",
                             min=20)
    test_images: int = option(500, "builtin_images: images in the test split", min=10)


def data_errors(data: DataConfig) -> list[str]:
    """What is wrong with how the data keys go together (each key's own range is checked by its field)."""
    errors = []
    if data.name == "text" and not data.root:
        errors.append("data.name=text needs data.root=FOLDER holding ptb.train.txt, ptb.valid.txt, ptb.test.txt")
    if data.name == "cifar10" and not data.root:
        errors.append("data.name=cifar10 needs data.root=FOLDER (cifar-10-batches-py: data_batch_1..5, "
                      "test_batch)")
    if data.name == "image_folder" and not data.root:
        errors.append("data.name=image_folder needs data.root=FOLDER holding train/<class>/* and test/<class>/*")
    if data.unit == "char" and data.name != "text":
        errors.append(f"data.unit=char reads a text folder; it needs data.name=text, not {data.name}")
    if data.name == "torchvision" and not data.root:
        errors.append(f"data.name=torchvision needs data.root=FOLDER, the root torchvision reads "
                      f"data.dataset={data.dataset} from")
    return errors
