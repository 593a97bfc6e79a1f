"""Engine layer: fit a linear head on cached features to its optimum.

When only the head trains, its inputs are fixed features, so training it is a convex
problem (multinomial logistic regression) that a few epochs of SGD at a guessed
learning rate often leave far from solved, most of all on pictures unlike ImageNet.
Here it is solved instead: the features are standardised (every dimension on one
scale makes the problem well conditioned), L-BFGS with a line search picks its own
step sizes, the L2 penalty is chosen by validation loss from a short grid, and the
result is folded back into an ordinary ``nn.Linear`` over the raw features, so the
exported model is the same network as ever.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

PENALTIES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
"""L2 penalties tried (on standardised features); the issue's digits probe used 1e-3."""
DEFAULT_PENALTY = 1e-3  # when there are no validation pictures to choose with
MAX_ITERATIONS = 200
RELATIVE_TOLERANCE = 1e-6  # converged when the loss changes less than this, relatively
PATH_TOLERANCE = 1e-4  # coarser, while only comparing penalties


@dataclass(frozen=True)
class Standardiser:
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, features: torch.Tensor) -> Standardiser:
        return cls(features.mean(0), features.std(0, correction=0).clamp_min(1e-6))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


@dataclass(frozen=True)
class Problem:
    """The training features and what the loss asks of them."""

    features: torch.Tensor  # (pictures, dimensions), raw
    labels: torch.Tensor
    num_classes: int
    label_smoothing: float = 0.0
    class_weights: torch.Tensor | None = None


class LinearHeadSolver:
    """L-BFGS on one L2 penalty; ``step()`` is one iteration (one pass over the data)."""

    def __init__(
        self, problem: Problem, penalty: float, start: tuple[torch.Tensor, torch.Tensor] | None
    ) -> None:
        self.problem, self.penalty = problem, penalty
        self.standardise = Standardiser.of(problem.features)
        self.inputs = self.standardise(problem.features)
        shape = (problem.num_classes, problem.features.shape[1])
        weight, bias = start if start else (torch.zeros(shape), torch.zeros(shape[0]))
        self.weight = weight.clone().requires_grad_(True)
        self.bias = bias.clone().requires_grad_(True)
        self.optimizer = torch.optim.LBFGS(
            [self.weight, self.bias], lr=1.0, max_iter=1, history_size=20,
            line_search_fn="strong_wolfe",
        )  # fmt: skip
        self.loss = self._loss().item()

    def _loss(self) -> torch.Tensor:
        logits = self.inputs @ self.weight.T + self.bias
        fit = functional.cross_entropy(
            logits,
            self.problem.labels,
            weight=self.problem.class_weights,
            label_smoothing=self.problem.label_smoothing,
        )
        return fit + 0.5 * self.penalty * self.weight.square().sum()

    def step(self) -> float:
        """One iteration; returns the loss's relative change."""

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad()
            loss = self._loss()
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        before = self.loss
        self.optimizer.step(closure)  # type: ignore[no-untyped-call]
        with torch.no_grad():
            self.loss = self._loss().item()
        return abs(before - self.loss) / max(abs(before), 1e-12)

    def fit_loss(self) -> float:
        """The loss without the penalty: what a run trained by epochs reports."""
        with torch.no_grad():
            return float(self._loss() - 0.5 * self.penalty * self.weight.square().sum())

    def accuracy(self) -> float:
        with torch.no_grad():
            predicted = (self.inputs @ self.weight.T + self.bias).argmax(1)
        return float((predicted == self.problem.labels).float().mean())

    def step_size(self) -> float:
        """The line search's last step (L-BFGS's counterpart of a learning rate)."""
        state = self.optimizer.state_dict()["state"].get(0, {})
        return float(state.get("t", 1.0))

    def standardised_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight.detach().clone(), self.bias.detach().clone()

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same head over raw features: W x' + b with x' = (x - mean) / std."""
        weight = self.weight.detach() / self.standardise.std
        bias = self.bias.detach() - weight @ self.standardise.mean
        return weight, bias

    def solve(
        self,
        cancel: threading.Event | None = None,
        tolerance: float = RELATIVE_TOLERANCE,
        max_iterations: int = MAX_ITERATIONS,
    ) -> Iterator[int]:
        """Iterate to convergence (or the cap); yields the iteration number."""
        for iteration in range(1, max_iterations + 1):
            if cancel is not None and cancel.is_set():
                return
            change = self.step()
            yield iteration
            if change <= tolerance:
                return


def validation_loss(
    weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, labels: torch.Tensor
) -> float:
    with torch.no_grad():
        return float(functional.cross_entropy(features @ weight.T + bias, labels))


def choose_penalty(
    problem: Problem,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    cancel: threading.Event | None = None,
) -> Generator[tuple[int, int], None, float]:
    """The grid's penalty with the lowest validation loss; yields (tried, of).

    Fits from the strongest penalty to the weakest, each starting from the previous
    solution (a regularisation path), which converges in far fewer iterations.
    """
    if len(val_labels) == 0:
        return DEFAULT_PENALTY
    best, best_loss = DEFAULT_PENALTY, float("inf")
    start: tuple[torch.Tensor, torch.Tensor] | None = None
    for tried, penalty in enumerate(sorted(PENALTIES, reverse=True), start=1):
        solver = LinearHeadSolver(problem, penalty, start)
        for _ in solver.solve(cancel, PATH_TOLERANCE, MAX_ITERATIONS // 2):
            pass
        if cancel is not None and cancel.is_set():
            break
        loss = validation_loss(*solver.folded(), val_features, val_labels)
        if loss < best_loss:
            best, best_loss = penalty, loss
        start = solver.standardised_parameters()
        yield tried, len(PENALTIES)
    return best


@dataclass(frozen=True)
class SolvableHead:
    """A head block that ends in a Linear layer after parameter-free modules."""

    before: nn.Module  # what runs before the Linear (an activation, dropout): fixed
    linear: nn.Linear

    def inputs(self, features: torch.Tensor) -> torch.Tensor:
        """What the Linear layer sees for cached features, at evaluation (dropout off,
        an activation such as VGG's ReLU or MobileNetV3's Hardswish applied)."""
        self.before.eval()
        with torch.no_grad():
            return self.before(features)  # type: ignore[no-any-return]


def solvable_head(head_block: nn.Module) -> SolvableHead | None:
    """The head block as a fixed function followed by a Linear layer whose weight and
    bias both train; None when it is anything else (then it trains by epochs): a
    parameter the user froze stays exactly as it is."""
    modules = list(head_block.children()) if isinstance(head_block, nn.Sequential) else []
    *before, linear = modules or [head_block]
    if not isinstance(linear, nn.Linear) or linear.bias is None:
        return None
    if not all(parameter.requires_grad for parameter in linear.parameters()):
        return None
    if any(True for module in before for _ in module.parameters()):
        return None
    return SolvableHead(nn.Sequential(*before), linear)


def load_into(linear: nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    with torch.no_grad():
        linear.weight.copy_(weight.to(linear.weight))
        if linear.bias is not None:
            linear.bias.copy_(bias.to(linear.bias))
