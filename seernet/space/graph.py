"""Tracing a model into its policy space (``build_space``): channel groups from Torch-Pruning,
layer shapes from forward hooks."""

from __future__ import annotations

from collections import defaultdict

import torch
import torch_pruning as tp
from torch import nn

from seernet.space.policy import (
    ChannelGroup,
    Layer,
    PolicySpace,
    SpaceChoices,
    unsupported,
)

Terms = dict[str, dict[str, list[tuple[int, float]]]]
_KINDS = ((nn.Conv2d, "conv"), (nn.Linear, "linear"), (nn.BatchNorm2d, "bn"))


def dependency_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    # Torch-Pruning traces with autograd: callers under torch.no_grad() must still work.
    with torch.enable_grad():
        return tp.DependencyGraph().build_dependency(model, example_inputs=example)


def prunable_groups(dg: tp.DependencyGraph, model: nn.Module, ignored: list[str]):
    """Torch-Pruning's channel groups, rooted at conv/linear output channels."""
    ignored_modules = [model.get_submodule(n) for n in ignored]
    return dg.get_all_groups(
        ignored_layers=ignored_modules, root_module_types=(nn.Conv2d, nn.Linear)
    )


def named_groups(model: nn.Module, input_shape: tuple[int, ...]):
    """The model's dependency graph, and its prunable groups (classifier outputs kept) with
    their policy names. Groups come lazily: a caller that prunes sees them re-derived."""
    names = {m: n for n, m in model.named_modules()}
    example = torch.zeros(input_shape, device=next(model.parameters()).device)
    dg = dependency_graph(model, example)
    groups = prunable_groups(dg, model, [output_layer(model, example)])
    return dg, ((names[g[0].dep.target.module], g) for g in groups)


def trace_groups(
    model: nn.Module, example: torch.Tensor, choices: SpaceChoices, ignored: list[str]
) -> tuple[list[ChannelGroup], Terms]:
    """Channel groups, and for every module the groups its in/out channels belong to."""
    names = {m: n for n, m in model.named_modules()}
    dg = dependency_graph(model, example)
    groups: list[ChannelGroup] = []
    terms: Terms = defaultdict(lambda: {"in": [], "out": []})
    for group in prunable_groups(dg, model, ignored):
        root = group[0].dep.target.module
        channels = len(group[0].idxs)
        gi = len(groups)
        groups.append(ChannelGroup(names[root], channels, choices.keep_counts(channels)))
        seen = set()
        for item in group:
            module, handler = item.dep.target.module, item.dep.handler
            if module not in names:
                continue  # functional ops (add, cat, flatten) carry no parameters
            side = "out" if dg.is_out_channel_pruning_fn(handler) else "in"
            key = (names[module], side)
            if key in seen:
                continue
            seen.add(key)
            terms[names[module]][side].append((gi, len(item.idxs) / channels))
    return groups, dict(terms)


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _shapes_by_hooks(model: nn.Module, example: torch.Tensor) -> tuple[list[str], dict[str, int]]:
    """Execution order of conv/linear modules and their output positions per sample."""
    order: list[str] = []
    spatial: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):

            def hook(mod, inp, out, name=name):
                if name not in spatial:
                    order.append(name)
                    spatial[name] = (
                        out.numel() // out.shape[0] // out.shape[1] if out.dim() > 2 else 1
                    )

            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order, spatial


def output_layer(model: nn.Module, example: torch.Tensor) -> str:
    """The layer that makes the model's outputs, found from the forward pass: the last Conv2d
    or Linear it runs (a classifier, or a segmentation head). Its output channels are the
    task's outputs, so they are never pruned, and its bits stay fixed."""
    order, _ = _shapes_by_hooks(model, example)
    if not order:
        raise unsupported("the forward pass runs no Conv2d or Linear layer")
    return order[-1]


def trace_layers(model: nn.Module, example: torch.Tensor, terms: Terms) -> list[Layer]:
    """Every parameterised module with the shapes and couplings the cost model needs."""
    order, spatial = _shapes_by_hooks(model, example)
    first_conv, classifier = order[0], order[-1]
    layers: list[Layer] = []
    for name in order:
        layers.append(
            _conv_or_linear(
                name, model.get_submodule(name), spatial[name], terms, (first_conv, classifier)
            )
        )
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear) or _own_params(m) == 0:
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
            raise unsupported(f"{name} ({type(m).__name__}) has parameters on pruned channels")
        else:
            layers.append(Layer(name, "other", 0, 0, other_params=_own_params(m)))
    return layers


def _conv_or_linear(
    name: str, m: nn.Module, positions: int, terms: Terms, fixed: tuple[str, str]
) -> Layer:
    t = terms.get(name, {"in": [], "out": []})
    if isinstance(m, nn.Linear):
        return Layer(name, "linear", m.in_features, m.out_features, spatial=positions, bias=m.bias is not None,
                     in_terms=tuple(t["in"]), out_terms=tuple(t["out"]), fixed_bits=name in fixed)  # fmt: skip
    depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
    if m.groups > 1 and not depthwise and (t["in"] or t["out"]):
        raise unsupported(
            f"{name} is a grouped convolution (groups={m.groups}) whose channels would be pruned"
        )
    return Layer(
        name, "conv", m.in_channels, m.out_channels, kernel=m.kernel_size[0] * m.kernel_size[1],
        spatial=positions, depthwise=depthwise, conv_groups=1 if depthwise else m.groups,
        bias=m.bias is not None, in_terms=tuple(t["in"]), out_terms=tuple(t["out"]), fixed_bits=name in fixed,
    )  # fmt: skip


def build_space(
    model: nn.Module, input_shape: tuple[int, ...], choices: SpaceChoices | None = None
) -> PolicySpace:
    """Derive the policy space of ``model`` for inputs of ``input_shape`` (batch 1)."""
    choices = choices or SpaceChoices()
    model = model.eval()
    example = torch.zeros(input_shape, device=next(model.parameters()).device)
    groups, terms = trace_groups(model, example, choices, ignored=[output_layer(model, example)])
    layers = trace_layers(model, example, terms)
    return PolicySpace(groups, layers, choices, input_shape)
