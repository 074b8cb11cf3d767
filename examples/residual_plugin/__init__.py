"""An example plugin: a residual CNN the suite does not ship, and a Lightning DataModule over a local array.

Load it with ``python -m bench bench --plugin examples.residual_plugin --model residual-cnn
--dataset digits-datamodule --method coreset`` (or ``make bench PLUGINS=examples.residual_plugin ...``).
Everything here uses the public decorators only: ``bench.models.register_model`` and
``datasets.register_dataset``; an installed package would list this module under the
``compression_bench.plugins`` entry-point group instead of being named on the command line.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.models import register_model
from datasets import carve, register_dataset


class Block(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (identity, or a 1x1 conv + BN where the shape changes), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResidualCNN(nn.Module):
    """A stem, two stages of residual blocks (the second at twice the channels, stride 2), pool, and ``fc``.

    Not a flat chain: its ``forward`` adds shortcuts, so methods see it only through its modules and the
    dependency graph. The last layer is deliberately called ``fc`` (not ``classifier``): the suite finds
    the classifier by its rule, the last Linear with one output per class.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], channels, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU())
        stages = [Block(channels, channels, 1) for _ in range(blocks)]
        stages += [Block(channels, 2 * channels, 2)] + [Block(2 * channels, 2 * channels, 1) for _ in range(blocks - 1)]
        self.blocks = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


@register_model("residual-cnn")
def residual_cnn(input_shape: tuple[int, ...], num_classes: int, channels: int = 16, blocks: int = 2) -> nn.Module:
    """The example's residual CNN (``--model-option channels=8`` narrows it)."""
    return ResidualCNN(input_shape, num_classes, int(channels), int(blocks))


class ArrayDataModule(L.LightningDataModule):
    """train / val / test loaders over arrays already in memory (here scikit-learn's 8x8 digits).

    The splits are carved exactly as the built-in ``digits`` dataset carves them, so the same data given
    as a DataModule and as tensors can be compared run for run.
    """

    def __init__(self, batch_size: int = 128) -> None:
        super().__init__()
        from sklearn.datasets import load_digits

        d = load_digits()
        splits = carve("digits", d.images.astype(np.float32), d.target, None, None, (1, 8, 8), 10, scale=16.0)
        self.batch_size = batch_size
        self.input_shape, self.num_classes = splits.input_shape, splits.num_classes
        self.train = TensorDataset(splits.train_x, splits.train_y)
        self.val = TensorDataset(splits.val_x, splits.val_y)
        self.test = TensorDataset(splits.test_x, splits.test_y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=self.batch_size)


@register_dataset("digits-datamodule")
def digits_datamodule() -> ArrayDataModule:
    """scikit-learn's digits served by a LightningDataModule (the example of data that is not tensors)."""
    return ArrayDataModule()
