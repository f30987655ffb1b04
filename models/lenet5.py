"""LeNet5 as trained in the ICLR 2022 experiment (da Cunha, Natale, Viennot, Section 3).

28x28x1 inputs in [0, 1]; ReLU activations; "same" padding so the spatial size only halves at the pools::

    features:   Conv2d(1, 6, 5, padding=2)  ReLU  MaxPool2d(2)      28x28 -> 14x14
                Conv2d(6, 16, 5, padding=2) ReLU  MaxPool2d(2)      14x14 -> 7x7   (16x7x7 = 784)
    classifier: Flatten  Linear(784, 120) ReLU  Linear(120, 84) ReLU  Linear(84, 10)

The convolutional part has 150 + 6 + 2400 + 16 = 2572 parameters. Weights are Kaiming-uniform
(``U(-b, b)``, ``b = sqrt(6 / fan_in)``, identical to Flux's ``kaiming_uniform``), biases are zero
(Flux's default bias). Construction is seeded through a private ``torch.Generator``, so building a
model never touches (or depends on) the global RNG.
"""
from __future__ import annotations

import torch
from torch import nn

CONV_PARAMETERS = 2572
FEATURE_SHAPE = (16, 7, 7)


class LeNet5(nn.Module):
    """``model.features`` (conv part, output N x 16 x 7 x 7) followed by ``model.classifier``."""

    def __init__(self, seed: int | None = 0, num_classes: int = 10):
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # the layers' own default init must not advance the global RNG
            self._build(num_classes)
        self.reset_parameters(seed)

    def _build(self, num_classes: int) -> None:
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 7 * 7, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def reset_parameters(self, seed: int | None = 0) -> None:
        """Kaiming-uniform weights (gain sqrt(2), fan_in), zero biases; ``seed=None`` uses the global RNG."""
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_uniform_(m.weight, a=0.0, mode="fan_in", nonlinearity="relu", generator=gen)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet5(seed: int | None = 0) -> LeNet5:
    """A freshly initialised LeNet5 (seeded)."""
    return LeNet5(seed=seed)


def conv_parameter_count(model: nn.Module) -> int:
    """Number of parameters (weights and biases) in ``model.features``."""
    return sum(p.numel() for p in model.features.parameters())
