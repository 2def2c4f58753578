"""Tracing a model into its policy space (``build_space``): channel groups from Torch-Pruning,
layer shapes from forward hooks.

Torch-Pruning's groups are taken as they are where they can be pruned safely, and otherwise
left out of the space (their channels kept) with a one-line note in ``PolicySpace.notes``:

- A group whose channels reach a grouped convolution or a GroupNorm with G groups is pruned
  as Torch-Pruning's own pruners do it: the same channels in each of the G blocks (kept counts
  are multiples of G). With ``SpaceChoices.channel_multiple`` N, kept counts are multiples of
  lcm(N, G) or the group's full count; a group left no other count is kept, with a note.
- Root channels that reach the same channel of a layer (GhostNet's depthwise half of a
  concatenation) are tied: they are kept or removed together, so no layer loses more channels
  than the policy says and none is pruned to nothing.
- Channels that pass through a reshape mixing them (ShuffleNet's channel shuffle) or through a
  slice of part of the channels (a bound written in the forward, which pruning would not move)
  are kept, and so are those of a group Torch-Pruning fails to build; a model it cannot trace
  at all gets a space without groups (quantization only).
- A Conv2d/Linear subclass with a forward of its own (timm's Conv2dSame) stays in float.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from seernet.space.policy import (
    ChannelGroup,
    Layer,
    PolicySpace,
    SpaceChoices,
    unsupported,
)
from seernet.tp import tp

# Torch-Pruning's internals, through seernet.tp (it is imported there without timm)
_helpers = tp._helpers
index_mapping = tp.dependency.index_mapping
Dependency = tp.dependency.dependency.Dependency
Group = tp.dependency.group.Group

Terms = dict[str, dict[str, list[tuple[int, float]]]]
_KINDS = ((nn.Conv2d, "conv"), (nn.Linear, "linear"), (nn.BatchNorm2d, "bn"))
_RESHAPES = {"view", "reshape", "flatten", "unflatten", "view_as", "reshape_as"}


def _guard_reshape_mapping() -> None:
    """Torch-Pruning divides by zero on reshapes whose channels it cannot infer (a channel
    shuffle): leave those without an index mapping; ``_Recorder`` marks them unsafe."""
    original = index_mapping.update_reshape_index_mapping
    if getattr(original, "_seernet_guarded", False):
        return

    def guarded(graph, node):
        with contextlib.suppress(ZeroDivisionError):
            original(graph, node)

    guarded._seernet_guarded = True
    index_mapping.update_reshape_index_mapping = guarded


_guard_reshape_mapping()


def _mixes_channels(before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    """Whether a reshape from ``before`` to ``after`` moves channels (dim 1) out of place. Kept
    in place: the same channel dim, a flatten into features, and its inverse."""
    if len(before) < 2 or len(after) < 2:
        return False
    if before[0] != after[0]:
        return True
    if before[1] == after[1]:
        return False
    if len(after) == 2 and math.prod(before[1:]) == after[1]:
        return False  # flatten: channel c becomes features [c*HW, (c+1)*HW)
    return not (len(before) == 2 and math.prod(after[1:]) == before[1])


def _partial_channel_slice(x: torch.Tensor, index) -> bool:
    """Whether ``x[index]`` takes part of ``x``'s channels (dim 1) by a slice or an index."""
    if not isinstance(index, tuple) or len(index) < 2 or x.dim() < 2:
        return False
    first, ch = index[0], index[1]
    if first is Ellipsis or ch is Ellipsis or not isinstance(first, slice) or first != slice(None):
        return False
    if isinstance(ch, slice):
        start, stop, step = ch.indices(x.shape[1])
        return (start, stop, step) != (0, x.shape[1], 1)
    return ch is not None


class _Recorder(TorchFunctionMode):
    """During Torch-Pruning's trace, the autograd nodes of reshapes that mix channels and of
    tensors sliced along their channels: groups through them are not pruned."""

    def __init__(self) -> None:
        super().__init__()
        self.unsafe: list = []  # grad_fns (kept alive, so identity holds)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor):
            return out
        if name in _RESHAPES and _mixes_channels(tuple(x.shape), tuple(out.shape)):
            self.unsafe += [g for g in (out.grad_fn,) if g is not None]
        elif name == "__getitem__" and _partial_channel_slice(x, args[1]):
            self.unsafe += [g for g in (x.grad_fn, out.grad_fn) if g is not None]
        return out


class SeerGraph(tp.DependencyGraph):
    """Torch-Pruning's dependency graph, with a group search that visits each (layer, index,
    root index) once, so it ends on partial-channel residuals (ReXNet) where the original
    revisits forever, and that keeps every root channel reaching a layer channel (``ties``).
    Groups are otherwise the original's: same members, order and indices."""

    unsafe_nodes: set = frozenset()  # set by dependency_graph once the trace is done

    def get_pruning_group(self, module, pruning_fn, idxs) -> Group:
        if module not in self.module2node:
            raise ValueError(f"Module {module} is not in the dependency graph.")
        if (
            isinstance(module, tp.ops.TORCH_CONV)
            and module.groups == module.out_channels
            and module.out_channels > 1
        ):
            pruning_fn = tp.pruner.function.prune_depthwise_conv_out_channels
        if isinstance(idxs, int):
            idxs = [idxs]
        idxs = [_helpers._HybridIndex(idx=i, root_idx=i) for i in idxs]
        if getattr(self, "_stale", True):  # Torch-Pruning redoes this on every call
            index_mapping.update_index_mapping(self)
            self._stale = False
        group = Group()
        root = self.module2node[module]
        group.add_dep(Dependency(pruning_fn, pruning_fn, source=root, target=root), idxs)
        seen: dict[tuple, set] = {(root, pruning_fn): set(idxs)}
        stack = [(group[0].dep, idxs)]
        # A group through a channel-mixing reshape or slice, or through a mapping Torch-Pruning
        # cannot make, is never pruned: its search stops there (it could grow without bound).
        problem = (
            "its channels pass through a reshape or a slice of channels"
            if root in self.unsafe_nodes
            else None
        )
        while stack and problem is None:
            dep, cur = stack.pop()
            for new_dep in dep.target.dependencies:
                if not new_dep.is_triggered_by(dep.handler):
                    continue
                if new_dep.target in self.unsafe_nodes:
                    problem = "its channels pass through a reshape or a slice of channels"
                    break
                try:
                    new = _mapped(new_dep, cur)
                except (IndexError, ZeroDivisionError):  # sizes it could not infer (a shuffle)
                    problem = "Torch-Pruning cannot map its channels through a split or reshape"
                    break
                have = seen.setdefault((new_dep.target, new_dep.handler), set())
                fresh = [i for i in dict.fromkeys(new) if i not in have]
                if not fresh:
                    continue
                have.update(fresh)
                group.add_dep(new_dep, fresh)
                stack.append((new_dep, fresh))
        merged = _Group()
        for dep, ix in group.items:
            if isinstance(dep.target.module, nn.Parameter) and any(
                dep.target.module is p for p in self.ignored_params
            ):
                continue
            merged.add_and_merge(dep, ix)
        merged._DG = self
        for i in range(len(merged)):
            hybrid = merged[i].idxs
            merged[i] = _helpers.GroupItem(merged[i].dep, _helpers.to_plain_idxs(hybrid))
            merged[i].root_idxs = _helpers.to_root_idxs(hybrid)
        merged.seen, merged.problem = seen, problem
        return merged

    def get_all_groups(self, ignored_layers=(), root_module_types=(nn.Conv2d, nn.Linear)):
        """Torch-Pruning's enumeration (each layer's outputs in one group at most, groups with
        an ignored layer's outputs left out), except that a root whose group search fails comes
        back alone, with the failure as its ``problem``, instead of ending the enumeration."""
        ignored = {id(m) for m in (*ignored_layers, *self.IGNORED_LAYERS_IN_TRACING)}
        visited: set[int] = set()
        for m in list(self.module2node):
            if id(m) in ignored or id(m) in visited or not isinstance(m, tuple(root_module_types)):
                continue
            pruner = self.get_pruner_of_module(m)
            if pruner is None or pruner.get_out_channels(m) is None:
                continue
            fn, idxs = pruner.prune_out_channels, list(range(pruner.get_out_channels(m)))
            try:
                group = self.get_pruning_group(m, fn, idxs)
            except Exception as exc:  # noqa: BLE001 - any failure keeps this group's channels
                group = _Group()
                node = self.module2node[m]
                group.add_dep(Dependency(fn, fn, source=node, target=node), idxs)
                group._DG, group.seen = self, {}
                group.problem = f"Torch-Pruning cannot group them ({type(exc).__name__})"
            prunable = True
            for dep, _ in group:
                if self.is_out_channel_pruning_fn(dep.handler):
                    visited.add(id(dep.target.module))
                    prunable = prunable and id(dep.target.module) not in ignored
            if prunable:
                yield group


class _Group(Group):
    """A group whose pruning marks its graph's index mappings stale (channel counts change)."""

    def prune(self, idxs=None, record_history=True):
        self._DG._stale = True
        return super().prune(idxs, record_history)


def _mapped(dep, idxs: list) -> list:
    for mapping in dep.index_mapping:
        if mapping is not None:
            idxs = mapping(idxs)
    return idxs


def _ties(seen: dict[tuple, set]) -> list[list[int]]:
    """Classes of root channels that reach a common channel somewhere (union-find)."""
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for hybrid in seen.values():
        if len({h.idx for h in hybrid}) == len(hybrid):
            continue  # one root channel per channel here
        first: dict[int, int] = {}
        for h in hybrid:
            r = find(h.root_idx)
            if h.idx in first:
                parent[find(first[h.idx])] = r
            else:
                first[h.idx] = r
    if not parent:
        return []
    classes: dict[int, list[int]] = defaultdict(list)
    for i in parent:
        classes[find(i)].append(i)
    return sorted(sorted(c) for c in classes.values())


def dependency_graph(model: nn.Module, example: torch.Tensor) -> SeerGraph:
    recorder = _Recorder()

    def forward(m, x):
        with recorder:
            return m(x)

    # Torch-Pruning traces with autograd: callers under torch.no_grad() must still work.
    with torch.enable_grad():
        dg = SeerGraph().build_dependency(model, example_inputs=example, forward_fn=forward)
    unsafe = {id(g) for g in recorder.unsafe}
    dg.unsafe_nodes = {n for n in dg.module2node.values() if id(n.grad_fn) in unsafe}
    dg._recorded = recorder.unsafe  # keeps the ids above valid
    return dg


def traced_graph(
    model: nn.Module, example: torch.Tensor, notes: list[str] | None = None
) -> SeerGraph | None:
    """``dependency_graph``, or None (a note in ``notes``) when Torch-Pruning cannot trace the
    model: the space then prunes nothing and still quantizes."""
    try:
        return dependency_graph(model, example)
    except Exception as exc:  # noqa: BLE001 - any failure: no pruning, never a refusal
        if notes is not None:
            notes.append(f"no channel is pruned: Torch-Pruning cannot trace the model ({type(exc).__name__}: {exc})"[:300])  # fmt: skip
        return None


@dataclass(frozen=True)
class GroupPlan:
    """How a Torch-Pruning group is pruned: ``units`` are lists of root channels removed
    together (None: every channel on its own); ``reason`` says why it is not pruned at all."""

    units: tuple[tuple[int, ...], ...] | None = None
    reason: str | None = None

    @property
    def unit(self) -> int:
        return 1 if self.units is None else len(self.units[0])


def _channel_groups(dg: SeerGraph, module: nn.Module, out: bool) -> int:
    """Blocks a layer's channels fall into (grouped conv, GroupNorm), as Torch-Pruning's
    MetaPruner counts them; depthwise convolutions prune channel by channel."""
    if isinstance(module, tp.ops.TORCH_CONV) and module.groups == module.out_channels:
        return 1
    pruner = dg.get_pruner_of_module(module)
    if pruner is None:
        return 1
    return pruner.get_out_channel_groups(module) if out else pruner.get_in_channel_groups(module)


def _side_channels(dg: SeerGraph, module: nn.Module, out: bool) -> int | None:
    try:
        return dg.get_out_channels(module) if out else dg.get_in_channels(module)
    except Exception:  # a pruner without a channel count
        return None


def plan_group(dg: SeerGraph, group, layers: set) -> GroupPlan:
    """Whether and how ``group`` can be pruned (see the module doc); ``layers``: the model's
    modules (the graph's functional ops are not among them)."""
    channels = len(group[0].idxs)
    if getattr(group, "problem", None):
        return GroupPlan(reason=group.problem)
    blocks = 1
    for item in group:
        module = item.dep.target.module
        if module not in layers:
            continue
        out = dg.is_out_channel_pruning_fn(item.dep.handler)
        size = _side_channels(dg, module, out)
        if size is not None and any(not 0 <= i < size for i in item.idxs):
            return GroupPlan(reason="Torch-Pruning maps its channels past a layer's width")
        g = _channel_groups(dg, module, out)
        if g > 1:
            if len(item.idxs) != channels or size != channels:
                return GroupPlan(reason="a grouped layer sees only part of its channels")
            blocks = math.lcm(blocks, g)
    ties = _ties(getattr(group, "seen", {}))  # classes of tied root channels (of 2 or more)
    tied = bool(ties)
    if tied:  # every other root channel is a class of its own
        alone = set(range(channels)).difference(*ties)
        ties = sorted([*ties, *([i] for i in alone)])
    if tied and len({len(c) for c in ties}) != 1:
        return GroupPlan(reason="its channels are tied in classes of unequal size")
    if tied and blocks > 1:
        return GroupPlan(reason="its channels are both tied and split into grouped blocks")
    if blocks > 1:
        if channels % blocks:
            return GroupPlan(reason=f"{channels} channels do not split into {blocks} blocks")
        size = channels // blocks
        units = tuple(tuple(j + b * size for b in range(blocks)) for j in range(size))
        return GroupPlan(units=units)
    return GroupPlan(units=tuple(tuple(c) for c in ties)) if tied else GroupPlan()


def keep_counts(plan: GroupPlan, channels: int, choices: SpaceChoices) -> tuple[int, ...]:
    """Valid kept-channel counts of a group pruned by ``plan`` (whole units); with
    ``choices.channel_multiple`` N, multiples of lcm(N, unit) (or the full count)."""
    if plan.units is None:
        return choices.keep_counts(channels)
    # k units keep k * unit channels, a multiple of N when k is one of N / gcd(N, unit).
    units = choices.channel_multiple // math.gcd(choices.channel_multiple, plan.unit)
    return tuple(k * plan.unit for k in choices.keep_counts(len(plan.units), units))


def prunable_groups(
    dg: SeerGraph, model: nn.Module, ignored: list[str], choices: SpaceChoices | None = None,
    notes: list[str] | None = None,
) -> Iterator[tuple[object, GroupPlan]]:  # fmt: skip
    """Torch-Pruning's channel groups rooted at conv/linear output channels, with their plans;
    groups that cannot be pruned are skipped (a note each in ``notes``)."""
    names = {m: n for n, m in model.named_modules()}
    layers = set(names)
    choices = choices or SpaceChoices()
    ignored_modules = [model.get_submodule(n) for n in ignored]
    for group in dg.get_all_groups(
        ignored_layers=ignored_modules, root_module_types=(nn.Conv2d, nn.Linear)
    ):
        plan = plan_group(dg, group, layers)
        channels = len(group[0].idxs)
        if plan.units is not None and len(keep_counts(plan, channels, choices)) < 2:
            plan = GroupPlan(reason=f"its {channels} channels leave no choice in whole units")
        elif choices.channel_multiple > 1 and len(keep_counts(plan, channels, choices)) < 2:
            # Only with N > 1: spaces made before channel_multiple keep their one-count groups.
            n = choices.channel_multiple
            plan = GroupPlan(reason=f"its {channels} channels leave no choice in multiples of {n}")
        if plan.reason is not None:
            if notes is not None:
                notes.append(f"channels of {names[group[0].dep.target.module]} kept: {plan.reason}")
            continue
        yield group, plan


def named_groups(
    model: nn.Module, input_shape: tuple[int, ...], choices: SpaceChoices | None = None
):
    """The model's dependency graph, and its prunable groups (output layer's channels kept) with
    their policy names; each group's ``plan`` attribute says how it is pruned. Groups come
    lazily: a caller that prunes sees them re-derived. ``choices``: the space's (a group pruned
    in whole units is in the space only when they leave a choice)."""
    names = {m: n for n, m in model.named_modules()}
    example = torch.zeros(input_shape, device=next(model.parameters()).device)
    dg = traced_graph(model, example)
    if dg is None:  # not traceable: the space has no groups either
        return None, iter(())

    def planned(group, plan):
        group.plan = plan
        return names[group[0].dep.target.module], group

    return dg, (
        planned(g, plan)
        for g, plan in prunable_groups(dg, model, [output_layer(model, example)], choices)
    )


def _owners(model: nn.Module) -> dict[int, str]:
    """id of each parameter -> the name of the module holding it directly."""
    return {
        id(p): name
        for name, m in model.named_modules()
        for p in m.parameters(recurse=False)
    }  # fmt: skip


def trace_groups(
    model: nn.Module, example: torch.Tensor, choices: SpaceChoices, ignored: list[str],
    notes: list[str] | None = None,
) -> tuple[list[ChannelGroup], Terms]:  # fmt: skip
    """Channel groups, and for every module the groups its in/out channels belong to.

    A parameter outside any layer type Torch-Pruning knows (a layer scale) counts as an output
    side of the module holding it."""
    names = {m: n for n, m in model.named_modules()}
    owners = _owners(model)
    groups: list[ChannelGroup] = []
    terms: Terms = defaultdict(lambda: {"in": [], "out": []})
    dg = traced_graph(model, example, notes)
    if dg is None:
        return groups, {}
    for group, plan in prunable_groups(dg, model, ignored, choices, notes):
        root = group[0].dep.target.module
        channels = len(group[0].idxs)
        gi = len(groups)
        groups.append(ChannelGroup(names[root], channels, keep_counts(plan, channels, choices)))
        seen = set()
        for item in group:
            module, handler = item.dep.target.module, item.dep.handler
            if isinstance(module, nn.Parameter) and id(module) in owners:
                key = (owners[id(module)], "out")
            elif module in names:
                key = (names[module], "out" if dg.is_out_channel_pruning_fn(handler) else "in")
            else:
                continue  # functional ops (add, cat, flatten) carry no parameters
            if key in seen:
                continue
            seen.add(key)
            terms[key[0]][key[1]].append((gi, len(item.idxs) / channels))
    return groups, dict(terms)


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


# The modules whose multiply-accumulates the cost model counts.
COUNTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def _shapes_by_hooks(model: nn.Module, example: torch.Tensor) -> tuple[list[str], dict[str, int]]:
    """Execution order of conv/linear modules and their positions per sample, summed over
    every call of the module (one called twice per forward costs twice): a conv's output
    positions, a transposed conv's input positions (each input pixel meets the whole kernel),
    a linear layer's positions of the middle dims on (N, ..., C) features."""
    order: list[str] = []
    spatial: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, COUNTED):
            channel_dim = -1 if isinstance(m, nn.Linear) else 1
            by_input = isinstance(m, nn.ConvTranspose2d)

            def hook(mod, inp, out, name=name, channel_dim=channel_dim, by_input=by_input):
                t = inp[0] if by_input else out
                positions = t.numel() // t.shape[0] // t.shape[channel_dim] if t.dim() > 2 else 1
                if name not in spatial:
                    order.append(name)
                spatial[name] = spatial.get(name, 0) + positions

            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order, spatial


# Subclasses whose own forward computes what their base's does (timm's Linear: F.linear, with a
# dtype cast only under TorchScript), so a fake-quant wrapper's forward may stand in for it.
SAME_FORWARD = frozenset({"timm.layers.linear.Linear"})


def quantizable(module: nn.Module) -> bool:
    """Whether a fake-quant wrapper can stand in for ``module``: a Conv2d or Linear whose
    forward is its base's (timm's Conv2dSame pads in a forward of its own: it stays in float)."""
    cls = type(module)
    return any(
        isinstance(module, base)
        and (cls.forward is base.forward or f"{cls.__module__}.{cls.__qualname__}" in SAME_FORWARD)
        for base in (nn.Conv2d, nn.Linear)
    )


def output_layer(model: nn.Module, example: torch.Tensor) -> str:
    """The layer that makes the model's outputs, found from the forward pass: the last Conv2d,
    ConvTranspose2d or Linear it runs (a classifier, or a segmentation head). Its output channels are the
    task's outputs, so they are never pruned, and its bits stay fixed."""
    order, _ = _shapes_by_hooks(model, example)
    if not order:
        raise unsupported("the forward pass runs no Conv2d or Linear layer")
    return order[-1]


def trace_layers(
    model: nn.Module, example: torch.Tensor, terms: Terms, notes: list[str] | None = None
) -> list[Layer]:
    """Every parameterised module with the shapes and couplings the cost model needs."""
    notes = [] if notes is None else notes
    order, spatial = _shapes_by_hooks(model, example)
    first_conv, classifier = order[0], order[-1]
    layers: list[Layer] = []
    for name in order:
        m = model.get_submodule(name)
        layers.append(_conv_or_linear(name, m, spatial[name], terms, (first_conv, classifier)))
        if not layers[-1].quantized:
            notes.append(f"{name} ({type(m).__name__}) stays in float: its own forward cannot be fake-quantized")  # fmt: skip
    for name, m in model.named_modules():
        if isinstance(m, COUNTED) or _own_params(m) == 0:
            continue
        t = terms.get(name, {"in": [], "out": []})
        if isinstance(m, nn.BatchNorm2d):
            layers.append(
                Layer(
                    name,
                    "bn",
                    m.num_features,
                    m.num_features,
                    bias=m.affine,
                    out_terms=tuple(t["out"]),
                )
            )
        elif t["in"] or t["out"]:
            layers.append(_channelwise(name, m, t))
        else:
            layers.append(Layer(name, "other", 0, 0, other_params=_own_params(m)))
    return layers


def _channelwise(name: str, m: nn.Module, t: dict) -> Layer:
    """A module with parameters on pruned channels (LayerNorm, GroupNorm, a layer scale): each
    of its own parameters with a dimension of its channel count shrinks with the channels."""
    merged: dict[int, float] = {}
    for g, coef in (*t["out"], *t["in"]):
        merged.setdefault(g, coef)
    channels = _module_channels(m)
    per_channel = fixed = 0
    for p in m.parameters(recurse=False):
        if channels and channels in p.shape:
            per_channel += p.numel() // channels
        else:
            fixed += p.numel()
    return Layer(name, "channelwise", channels, channels, other_params=fixed,
                 channel_params=per_channel, out_terms=tuple(merged.items()))  # fmt: skip


def _module_channels(m: nn.Module) -> int:
    for attr in ("num_channels", "num_features", "num_parameters"):
        if isinstance(getattr(m, attr, None), int):
            return getattr(m, attr)
    if isinstance(m, nn.LayerNorm):
        return m.normalized_shape[-1]
    own = [p for p in m.parameters(recurse=False)]
    return max((max(p.shape) for p in own if p.dim() > 0), default=0)


def _conv_or_linear(
    name: str, m: nn.Module, positions: int, terms: Terms, fixed: tuple[str, str]
) -> Layer:
    t = terms.get(name, {"in": [], "out": []})
    quantized = quantizable(m)
    if isinstance(m, nn.Linear):
        return Layer(name, "linear", m.in_features, m.out_features, spatial=positions, bias=m.bias is not None,
                     in_terms=tuple(t["in"]), out_terms=tuple(t["out"]), fixed_bits=name in fixed,
                     quantized=quantized)  # fmt: skip
    depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
    # A grouped convolution keeps its groups when pruned (whole blocks, see plan_group).
    return Layer(
        name, "conv", m.in_channels, m.out_channels, kernel=m.kernel_size[0] * m.kernel_size[1],
        spatial=positions, depthwise=depthwise, conv_groups=1 if depthwise else m.groups,
        bias=m.bias is not None, in_terms=tuple(t["in"]), out_terms=tuple(t["out"]), fixed_bits=name in fixed,
        quantized=quantized,
    )  # fmt: skip


def build_space(
    model: nn.Module, input_shape: tuple[int, ...], choices: SpaceChoices | None = None
) -> PolicySpace:
    """Derive the policy space of ``model`` for inputs of ``input_shape`` (batch 1).

    What the space cannot prune or quantize is kept as it is, a line each in ``space.notes``."""
    choices = choices or SpaceChoices()
    model = model.eval()
    example = torch.zeros(input_shape, device=next(model.parameters()).device)
    notes: list[str] = []
    groups, terms = trace_groups(
        model, example, choices, ignored=[output_layer(model, example)], notes=notes
    )
    layers = trace_layers(model, example, terms, notes)
    return PolicySpace(groups, layers, choices, input_shape, notes=notes)
