"""A training step's loss and gradients as one graph: traced once per shape, replayed without Pyro's Python.

A step of a fixed model does the same tensor operations every time: guide, model, log-weights, the
objective's surrogate loss and its backward differ between steps only in the numbers drawn and the
data. :class:`StepGraph` records those operations once, with ``make_fx`` (PyTorch's dispatcher-level
tracer, the front end of ``torch.compile``'s AOTAutograd) on fake tensors: Pyro's effect handlers,
the objective's trace bookkeeping and the autograd engine run once, and what remains is an FX graph
``(parameters, batch, beta) -> (loss, gradients, auxiliary terms)`` with its random draws
(``aten.normal`` and kin) as nodes, drawn anew at every replay. That graph is then compiled by
``torch.compile`` (``inductor``: fused kernels), which sees one graph with no Python in it, so there
is nothing to break it.

What is fixed at tracing is what a step reads from Python rather than from tensors: the batch's shape
(the last batch of an epoch gets a graph of its own), whether beta is 0, 1 or another value (passed as
a tensor, so that KL annealing does not retrace), the modules' train/eval modes, and any Python
attribute a model reads. A step whose operations depend on tensor values (``if loss > 0``, ``.item()``)
cannot be traced on fake tensors; it falls back to the uncompiled step with one
:class:`CompileFallbackWarning`, as do parameters outside ``nn.Module`` s.

References: J. Ansel et al., "PyTorch 2: Faster Machine Learning Through Dynamic Python Bytecode
Transformation and Graph Compilation", ASPLOS 2024 (make_fx, AOTAutograd, TorchInductor).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import torch
from pyro.infer import TraceEnum_ELBO, TraceGraph_ELBO
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from pyrovae.errors import is_out_of_memory

Loss = Callable[[tuple[torch.Tensor, ...], "float | torch.Tensor"], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]
Gradients = list[torch.Tensor | None]


class CompileFallbackWarning(UserWarning):
    """The step could not be traced or compiled, and trains uncompiled; the message says why."""


class Step(nn.Module):
    """Model and guide as one module whose forward is the step's loss: what DDP wraps and what
    :class:`StepGraph` traces with its parameters as inputs.

    :param modules: model and guide by role (``nn.Module`` s; their parameters are the step's).
    :param loss: ``(args, beta) -> (loss, auxiliary terms)``, the trainer's.
    """

    def __init__(self, modules: dict[str, nn.Module], loss: Loss) -> None:
        super().__init__()
        self.programs = nn.ModuleDict(modules)
        self.loss = loss

    def forward(self, args: tuple[torch.Tensor, ...], beta: float | torch.Tensor) -> tuple:
        return self.loss(args, beta)


class StepGraph:
    """``(args, beta) -> (loss, gradients, auxiliary terms)`` of a :class:`Step`, by graphs traced per shape.

    :param step: the step; its trainable parameters (``named_parameters``, shared ones once) are the graph's
        inputs, and :attr:`parameters` lists them in the order of the gradients returned.
    :param backend: ``torch.compile``'s backend for each traced graph (``"inductor"``; ``"eager"``: Dynamo alone,
        which replays the graph's operations one by one); ``None``: the traced graph replayed as it is.
    """

    def __init__(self, step: Step, *, backend: str | None = "inductor") -> None:
        self.step, self.backend = step, backend
        named = {n: p for n, p in step.named_parameters() if p.requires_grad}  # frozen ones: constants of the graph
        self.names, self.parameters = list(named), list(named.values())
        # the graph's inputs: the parameters without autograd (the graph holds its own backward), sharing storage
        self._inputs = [p.detach() for p in self.parameters]
        self.graphs: dict[tuple, Callable] = {}
        self.seconds = 0.0  # spent tracing and compiling, over all graphs
        self.failed: str | None = None  # why the step fell back to the uncompiled one; None: it did not

    def __call__(
        self, args: tuple[torch.Tensor, ...], beta: float
    ) -> tuple[torch.Tensor, Gradients, tuple[torch.Tensor, ...]] | None:
        """The step's loss (detached), each parameter's gradient (``None`` if unused) and the auxiliary terms;
        ``None`` once tracing or compiling has failed (after one :class:`CompileFallbackWarning`)."""
        if self.failed is not None:
            return None
        scaled = beta not in (0.0, 1.0)  # 0 masks and 1 skips the KL's scale: those stay Python constants
        modes = tuple(m.training for m in self.step.programs.values())  # model's and guide's train/eval modes
        key = (tuple((a.shape, a.dtype) for a in args), None if scaled else beta, modes)
        beta_input = torch.tensor(beta, device=args[0].device) if scaled else None
        graph = self.graphs.get(key)
        if graph is not None:
            loss, grads, aux = graph(self._inputs, args, beta_input)
            return loss, list(grads), tuple(aux)
        start = time.perf_counter()
        try:  # the first call at these shapes traces, and compiles (torch.compile compiles at its first call)
            graph = self._traced(args, None if scaled else beta)
            loss, grads, aux = graph(self._inputs, args, beta_input)
        except Exception as e:  # whatever stops tracing or compiling: train uncompiled, once said
            if is_out_of_memory(e):
                raise
            self.failed = _reason(e)
            warnings.warn(
                f"--compile: the training step could not be compiled ({self.failed}); training uncompiled",
                CompileFallbackWarning,
                stacklevel=3,
            )
            return None
        self.graphs[key] = graph
        self.seconds += time.perf_counter() - start
        return loss, list(grads), tuple(aux)

    def _traced(self, args: tuple[torch.Tensor, ...], beta: float | None) -> Callable:
        """The graph of one step at these shapes, compiled by :attr:`backend`.

        :param beta: the KL weight, a constant of the graph; ``None``: the graph's third input, a tensor.
        """
        names, step = self.names, self.step

        def loss_and_gradients(params: list[torch.Tensor], args: tuple, beta_input: torch.Tensor | None) -> tuple:
            live = [p.requires_grad_() for p in params]  # fake tensors: autograd records the backward to trace
            parameters = dict(zip(names, live, strict=True))
            loss, aux = torch.func.functional_call(step, parameters, (args, beta_input if beta is None else beta))
            grads = torch.autograd.grad(loss, live, allow_unused=True)
            return loss.detach(), grads, tuple(a.detach() for a in aux)

        with torch.random.fork_rng(devices=[args[0].device] if args[0].device.type == "cuda" else []):
            beta_input = None if beta is not None else torch.tensor(0.5, device=args[0].device)  # a stand-in
            graph = make_fx(loss_and_gradients, tracing_mode="fake", _allow_non_fake_inputs=True)(
                self._inputs, args, beta_input
            )
        if self.backend is None:
            return graph
        return torch.compile(graph, backend=self.backend, fullgraph=True, dynamic=False)


def _reason(error: Exception) -> str:
    """Why tracing or compiling failed, in one line."""
    if "DataDependent" in type(error).__name__:  # e.g. GuardOnDataDependentSymNode, DataDependentOutputException
        return "it reads a tensor's value in Python, as in `if x.sum() > 0` or `.item()`"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def untraceable(objective: object) -> str | None:
    """Why ``objective`` cannot be traced on fake tensors, for the objectives known not to be; ``None`` otherwise.

    Pyro's ``TraceEnum_ELBO`` (enumerated discrete latents) branches on whether every enumerated probability is
    positive (``pyro.infer.util.Dice.compute_expectation``), and ``TraceGraph_ELBO`` (NVIL's score-function
    gradient) tracks dependencies with a tensor subclass (``ProvenanceTensor``) that fake tensors cannot wrap.
    """
    if isinstance(objective, TraceEnum_ELBO):
        return "Pyro's TraceEnum_ELBO, which sums the enumerated latents, branches on their probabilities' values"
    if isinstance(objective, TraceGraph_ELBO):
        return "Pyro's TraceGraph_ELBO (score-function gradients) tracks dependencies with a tensor subclass"
    if hasattr(objective, "at_step"):  # a traced graph would keep the first step's value
        return f"{type(objective).__name__} changes with the step (its target), which a traced graph would fix"
    return None


def average_gradients(grads: Sequence[torch.Tensor | None], mean: Callable[[torch.Tensor], torch.Tensor]) -> Gradients:
    """``grads`` averaged over data-parallel ranks in one collective: ``mean`` of their concatenation (as DDP's
    all-reduce does for the uncompiled step); the unused (``None``, on every rank alike) stay ``None``."""
    used = [g for g in grads if g is not None]
    if not used:
        return list(grads)
    flat = mean(torch.cat([g.reshape(-1) for g in used]))
    parts = iter(flat.split([g.numel() for g in used]))
    return [None if g is None else next(parts).view_as(g) for g in grads]
