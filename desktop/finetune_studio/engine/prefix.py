"""Engine layer: cut a network where its trainable part begins.

With the first blocks frozen and no augmentation, they turn each picture into the
same activations every time: computing those once and training the rest on them is
what makes trial runs of ``last:N`` affordable on a CPU.

The cut is made on a torch.fx graph in which every block of ``block_units`` is one
opaque call, so each block's own code runs as written (its train/eval behaviour,
dropout, stochastic depth), and whatever glue the model's ``forward`` has between
blocks (ResNet's flatten, ViT's class token) is kept exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import fx, nn
from torch.fx.node import Argument

from .errors import UserFacingError
from .freezing import block_units


class CutError(UserFacingError):
    """The network cannot be cut there (its ``forward`` is not traceable, or a
    trainable parameter is used before the cut)."""


class _BlockTracer(fx.Tracer):
    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return qualified_name in self.leaves or super().is_leaf_module(module, qualified_name)


@dataclass(frozen=True)
class Cut:
    """The network as two modules sharing its parameters: ``frozen`` maps a batch of
    pictures to the activations at the cut (a tuple), ``rest`` maps those to logits."""

    frozen: fx.GraphModule
    rest: fx.GraphModule


class BlockGraph:
    """A model traced with its blocks as leaves; cuts share the model's modules."""

    def __init__(self, model: nn.Module, head_path: str) -> None:
        self.model = model
        self.units = block_units(model, head_path)
        leaves = {path for unit in self.units for path in unit} | {head_path}
        try:
            self.graph = _BlockTracer(leaves).trace(model)
        except Exception as error:  # fx raises many kinds on untraceable code
            raise CutError(f"The network's forward cannot be traced ({error}).") from error
        self.nodes = list(self.graph.nodes)

    def frontier(self, blocks: int) -> list[fx.Node]:
        """The values the last ``blocks`` blocks (and what follows them) need from
        before them: usually one tensor; the input pictures when ``blocks`` covers
        every block."""
        if blocks >= len(self.units):
            return self._placeholders()
        paths = set(self.units[len(self.units) - blocks])
        first = next(
            (n for n in self.nodes if n.op == "call_module" and _within(n.target, paths)), None
        )
        if first is None:
            raise CutError(f"No call of {sorted(paths)[0]} in the traced network.")
        before = set(self.nodes[: self.nodes.index(first)])
        return [n for n in before if any(user not in before for user in n.users)]

    def input_of(self, module_path: str) -> fx.Node:
        """The value a module (such as the head block's first module) is called with."""
        node = next(
            (n for n in self.nodes if n.op == "call_module" and n.target == module_path), None
        )
        if node is None or not isinstance(node.args[0], fx.Node):
            raise CutError(f"No call of {module_path} in the traced network.")
        return node.args[0]

    def capture(self, values: Sequence[fx.Node]) -> fx.GraphModule:
        """A module from the input pictures to ``values``, as a tuple."""
        return self._module(self._placeholders(), values, as_tuple=True)

    def rest(self, frontier: Sequence[fx.Node]) -> fx.GraphModule:
        """A module from the ``frontier`` values to the logits."""
        output = next(n for n in self.nodes if n.op == "output")
        return self._module(frontier, [output.args[0]], as_tuple=False)

    def cut_before_last(self, blocks: int) -> Cut:
        """The network before the last ``blocks`` blocks, and the rest."""
        frontier = self.frontier(blocks)
        frozen = self.capture(frontier)
        if any(parameter.requires_grad for parameter in frozen.parameters()):
            raise CutError("A trainable parameter is used before the cut.")
        return Cut(frozen, self.rest(frontier))

    def _placeholders(self) -> list[fx.Node]:
        return [n for n in self.nodes if n.op == "placeholder"]

    def _module(
        self, inputs: Sequence[fx.Node], outputs: Sequence[Argument], as_tuple: bool
    ) -> fx.GraphModule:
        """A module computing ``outputs`` (a tuple, or the one output) from ``inputs``."""
        graph = fx.Graph()
        values: dict[fx.Node, fx.Node] = {
            node: graph.placeholder(f"cut_{i}") for i, node in enumerate(inputs)
        }
        needed = _ancestors(outputs, set(inputs))
        for node in self.nodes:
            if node in needed and node not in values:
                values[node] = graph.node_copy(node, lambda n: values[n])
        mapped = [fx.map_arg(o, lambda n: values[n]) for o in outputs]
        graph.output(tuple(mapped) if as_tuple else mapped[0])
        return fx.GraphModule(self.model, graph)


def _within(target: object, paths: set[str]) -> bool:
    return isinstance(target, str) and any(target == p or target.startswith(p + ".") for p in paths)


def _ancestors(outputs: Iterable[Argument], stop: set[fx.Node]) -> set[fx.Node]:
    """The nodes ``outputs`` depend on, not looking past ``stop``."""
    pending: list[fx.Node] = []
    for output in outputs:
        fx.map_arg(output, pending.append)
    seen: set[fx.Node] = set()
    while pending:
        node = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        if node not in stop:
            pending.extend(node.all_input_nodes)
    return seen
