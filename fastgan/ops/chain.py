"""A run of fused conv layers as one eager autograd Function (LayerChain): the same
launches as the layers' own Functions, in the same order with the same arguments, so
the same results bit for bit, with one autograd node for the run instead of one per
layer. Each node costs host time that a GPU step waits on (a Python forward, saved
tensors, the engine calling a Python backward): fastgan.bench.host.

A chain is a tuple of layers, each a ConvLayer (conv / transposed conv + bias + act,
fastgan.ops.conv's ConvBiasAct) or a BlockLayer (conv -> batch norm -> act in
training mode, fastgan.ops.conv_bn's block). fastgan.nn.FusedSequential builds them
from its children and decides when a chain may run (eager, grad mode, training,
backend 'triton', no hooks); everything else runs the layers one by one.

Inside the chain the blocks hand their batch-norm sums from consumer to producer as
consecutive block modules do (fastgan.ops.conv_bn's BlockLink); the first layer takes
the link of a block that produced its input, and a block at the end leaves one on the
output. Intermediate tensors are kept on the chain's context (nothing outside the
chain can see or change them); the chain's input, parameters and output are saved
with save_for_backward (version checks, and no reference cycle through the output).

From the second chained call of a signature on, a chain's forward and backward run
through launch programs (kernels._program): recorded once, then replayed as their
allocations and launches, without the per-layer Python (fastgan.bench.host).

Higher order (create_graph=True: R1, WGAN-GP): the backward runs the chain again with
the layers' own Functions (the same kernels on the same inputs: the same bits) and
differentiates that, so every gradient of any order is the per-layer path's.
"""

from __future__ import annotations

import torch

from .. import _backend
from ..kernels import _plans, _program
from ..kernels import batch_norm as KB
from . import _bilinear as B
from . import _eager
from . import conv as _conv_ops
from . import conv_bn as _blocks

# Where a layer's state keeps its saved activation tensor s (which may be the chain's output).
_S = 2


class ConvLayer:
    """conv (transposed when `transposed`) + bias + act; parameters (weight, bias)."""

    __slots__ = ("stride", "padding", "output_padding", "transposed", "activation")
    n_params = 2

    def __init__(self, stride, padding, output_padding, transposed, activation):
        self.stride, self.padding, self.output_padding = list(stride), list(padding), list(output_padding)
        self.transposed, self.activation = transposed, activation

    def forward(self, x, params, running):
        """(y, state): ConvBiasAct's forward launch and what its backward reads."""
        weight, bias = params
        y, z = _conv_ops.conv_bias_act_run(x, weight, bias, self.stride, self.padding, self.output_padding,
                                           self.transposed, *self.activation)
        act = B.Act(*self.activation)
        ops = _conv_ops._conv_ops(self.stride, self.padding, self.transposed, x.shape[2:], y.shape[2:],
                                  weight.shape[2:], _conv_ops.EAGER)
        return y, [act, ops, B.saved_for_backward(act, y, z)]

    @staticmethod
    def backward(state, link, in_link, needs, gy, x, params):
        """(gx, gw, gb): ConvBiasAct's first-order backward."""
        act, ops, s = state
        return B.fwd_backward(ops, needs, act, x, params[0], s, gy, None)

    def differentiable(self, x, params):
        """The layer through its own Function (a graph any order can differentiate)."""
        return _conv_ops.ConvBiasAct.apply(x, *params, self.stride, self.padding, self.output_padding,
                                           self.transposed, *self.activation)[0]


class BlockLayer:
    """conv -> batch norm -> act with batch statistics; parameters (weight, bias,
    bn_weight, bn_bias); its running statistics come with each call."""

    __slots__ = ("geometry", "eps", "act", "alpha")
    n_params = 4

    def __init__(self, geometry, eps, act, alpha):
        self.geometry, self.eps, self.act, self.alpha = geometry, eps, act, alpha

    def forward(self, x, params, running):
        """(y, state): the block's forward launches and what its backward reads."""
        y, (xc, s, mean, var), cfg = _blocks.block_forward(x, *params, self.geometry, self.eps, self.act, self.alpha,
                                                           running)
        return y, [cfg, xc, s, mean, var]

    def fill(self, link, y, state, bn_weight):
        """Fills link with what the block's consumer needs; returns the fill's arguments."""
        cfg, xc, s, mean, var = state
        args = (None if s is y else s, xc, mean, var, bn_weight, self.eps, self.act, self.alpha)
        link.fill(*args)
        return args

    @staticmethod
    def backward(state, link, in_link, needs, gy, x, params):
        """(gx, gw, gb, g_bn_w, g_bn_b): the block's first-order backward."""
        cfg, xc, s, mean, var = state
        return _blocks.block_backward(cfg, link, in_link, needs, gy, x, params[0], params[2], xc, s, mean, var)

    def differentiable(self, x, params):
        """The block through its own Function, running statistics left alone."""
        return _blocks.conv_batch_norm_act(x, *params, self.geometry, self.eps, self.act, self.alpha)


class LayerChain(torch.autograd.Function):
    """y = layers[-1](... layers[0](x)). params: every layer's parameters in order
    (n_params each, None where a layer has none); running: per layer, a block's
    (running_mean, running_var, momentum, num_batches_tracked to count the batch in, or
    None) or None; in_link: the BlockLink of x (or
    None); out_link: a fresh BlockLink when the last layer is a block (the caller puts
    it on y), else None."""

    @staticmethod
    def forward(ctx, layers, running, in_link, out_link, x, *params):
        # Every tensor the forward reads: x, the parameters, the running statistics
        # (a launch program's inputs); their metadata is the signature's.
        inputs = [x, *params]
        for r in running:
            inputs += (None, None, None) if r is None else (r[0], r[1], r[3])
        ctx.signature = signature = (layers, tuple(map(_plans.meta, inputs)), _dispatch_state())
        key = _plans.program_key(("forward", signature))
        last = len(layers) - 1
        links = []

        def normal():
            token = _plans.freeze(signature)
            completed = False
            try:
                results = LayerChain._forward(layers, running, out_link, x, params, links)
                completed = True
                return results
            finally:
                _plans.thaw(token, completed)

        def program_inputs():
            # The momentum factors (per call with momentum=None) must be the recorded ones.
            return inputs, tuple([None if r is None else r[2] for r in running])

        # Everything after the output lives on ctx and in the links only: reusable
        # once the step that made it is over (its graph freed). Not the output,
        # which autograd makes its own.
        results, replayed = _programmed(key, program_inputs, normal, reuse_from=1)
        h, layer_inputs, *rest = results
        states = rest[:last + 1]
        if replayed:  # the links the recorded run made, filled as it filled them
            for k, fill in enumerate(rest[last + 1:]):
                link = None
                if fill is not None:
                    link = out_link if k == last else BlockLink()
                    link.fill(*fill)
                links.append(link)
        ctx.set_materialize_grads(False)
        # The chain's input, parameters and output through save_for_backward; the
        # intermediates on ctx, without the output (no cycle y -> its node -> y).
        layer_inputs[0] = None
        ctx.s_is_output = states[last][_S] is h
        if ctx.s_is_output:
            states[last][_S] = None
        ctx.layers, ctx.states, ctx.links, ctx.inputs, ctx.in_link = layers, states, links, layer_inputs, in_link
        ctx.save_for_backward(x, h, *params)
        return h

    @staticmethod
    def _forward(layers, running, out_link, x, params, links):
        """[output, layer inputs, *layer states, *link fills]: a link fill is what a
        block's link was filled with (None: no link, when no block consumes it); the
        links themselves appended to `links`."""
        states, fills, inputs = [], [], []
        h, i, last = x, 0, len(layers) - 1
        for k, layer in enumerate(layers):
            p = params[i:i + layer.n_params]
            i += layer.n_params
            inputs.append(h)
            y, state = layer.forward(h, p, running[k])
            # A block's output link, when a block consumes the output: the next layer,
            # or for the last layer whoever takes the chain's output.
            fill = link = None
            if type(layer) is BlockLayer:
                link = out_link if k == last else (BlockLink() if type(layers[k + 1]) is BlockLayer else None)
                if link is not None:
                    fill = layer.fill(link, y, state, p[2])
            states.append(state)
            fills.append(fill)
            links.append(link)
            h = y
        return [h, inputs, *states, *fills]

    @staticmethod
    def backward(ctx, gy):
        x, y, *params = ctx.saved_tensors
        layers = ctx.layers
        if gy is None:
            return (None,) * (5 + len(params))
        needs_x, needs_params = ctx.needs_input_grad[4], ctx.needs_input_grad[5:]
        if torch.is_grad_enabled():
            return (None,) * 4 + _recomputed_backward(layers, needs_x, needs_params, gy, x, params)
        signature = _backward_signature(ctx, gy)
        links, in_link = ctx.links, ctx.in_link

        def normal():
            token = _plans.freeze(signature)
            completed = False
            try:
                grads = LayerChain._backward(ctx, gy, x, y, params, needs_x, needs_params)
                completed = True
            finally:
                _plans.thaw(token, completed)
            # What the run left for others: the sums it computed for the block that
            # produced x, and which of its own links it used up.
            return [grads, None if in_link is None else in_link.sums,
                    tuple([k for k, link in enumerate(links) if link is not None and link.x is None])]

        # The links' state (a retained graph's second backward finds them used up).
        key = _plans.program_key(("backward", signature, tuple([
            None if link is None else (link.x is not None, link.sums is not None) for link in links])))

        def program_inputs():
            # Every tensor the backward may read: its own, those the forward kept,
            # the sums a consumer computed and the link of the block that made x.
            inputs = [gy, x, y, *params, *ctx.inputs]
            for state in ctx.states:
                inputs += state
            out_link = links[-1]
            inputs += (None,) * 4 if out_link is None or out_link.sums is None else out_link.sums
            inputs += (None,) * 5 if in_link is None else (in_link.s, in_link.x, in_link.mean, in_link.var,
                                                              in_link.weight)
            return inputs, None

        # The gradients and sums go to autograd and to the producer's backward: a
        # replay takes them again once nothing holds them (Program checks).
        (grads, sums, used), replayed = _programmed(key, program_inputs, normal, reuse_from=0)
        if replayed:
            for k in used:
                links[k].clear()
            if sums is not None:
                in_link.sums = sums
        return (None,) * 4 + grads

    @staticmethod
    def _backward(ctx, gy, x, y, params, needs_x, needs_params):
        layers = ctx.layers
        # Which layer inputs carry a gradient: those after any input that needs one.
        offsets, input_needs, i, need = [], [], 0, needs_x
        for layer in layers:
            offsets.append(i)
            input_needs.append(need)
            need = need or any(needs_params[i:i + layer.n_params])
            i += layer.n_params
        states, links = ctx.states, ctx.links
        last = len(layers) - 1
        grads = [None] * len(params)
        g = gy
        for k in range(last, -1, -1):
            layer, lo = layers[k], offsets[k]
            n = layer.n_params
            state = states[k]
            if k == last and ctx.s_is_output:
                state = list(state)
                state[_S] = y
            out = layer.backward(state, links[k], links[k - 1] if k else ctx.in_link,
                                 (input_needs[k], *needs_params[lo:lo + n]), g, x if k == 0 else ctx.inputs[k],
                                 params[lo:lo + n])
            grads[lo:lo + n] = out[1:]
            g = out[0]
            if g is None:  # nothing before this layer needs a gradient
                break
        return (g if needs_x else None, *grads)


BlockLink = _blocks.BlockLink


def _programmed(key, program_inputs, normal, reuse_from=None):
    """(results, replayed): a run through its launch program (kernels._program) when
    programs are on (key not None), else normal(). program_inputs() gives the
    program's inputs and the per-call values it must have been recorded with;
    reuse_from: the first result only the chain's context keeps (Program)."""
    if key is None:
        return normal(), False
    inputs, per_call = program_inputs()
    return _program.replay_or_record(_plans.programs, key, inputs, per_call, normal, reuse_from=reuse_from,
                                     check=_plans.CHECK_TAPES, limit=_plans.MAX_PLANS)


def _dispatch_state():
    """The settings outside kernels._plans's state that the chain's launches depend on:
    the backend (which implementation each op resolves to) and batch norm's launch
    config override (tests)."""
    return _backend._current, _backend._launches_stubbed, KB._CONFIGS.overridden()


def _backward_signature(ctx, gy):
    """What the backward's launch plans depend on besides the forward's signature (a
    launch plan tape, kernels._plans.Tape): dL/dy's metadata, which inputs need a
    gradient, whether the consumer of a last block already computed its sums from
    exactly gy, and the link of the block that produced the chain's input."""
    meta = _plans.meta
    out_link = ctx.links[-1]
    sums_ready = out_link is not None and out_link.sums is not None and out_link.sums[0] is gy
    in_link = ctx.in_link
    link = None
    if in_link is not None and in_link.x is not None:
        link = (meta(in_link.s), meta(in_link.x), meta(in_link.mean), meta(in_link.var), meta(in_link.weight),
                in_link.act)
    return ctx.signature, meta(gy), ctx.needs_input_grad, sums_ready, link, _dispatch_state()


# LayerChain.apply without autograd.Function.apply's Python layer (fastgan.ops._eager).
_apply = _eager._direct_apply(LayerChain)


def _recomputed_backward(layers, needs_x, needs_params, gy, x, params):
    """Gradients of (x, *params) for a higher-order graph: the chain run again through
    the layers' own Functions, then differentiated with create_graph."""
    inputs = (x, *params)
    needs = (needs_x, *needs_params)
    wanted = [i for i, t in enumerate(inputs) if t is not None and needs[i]]
    with torch.enable_grad():
        h, i = x, 0
        for layer in layers:
            h = layer.differentiable(h, params[i:i + layer.n_params])
            i += layer.n_params
        grads = torch.autograd.grad(h, [inputs[i] for i in wanted], gy, create_graph=True, allow_unused=True)
    out = [None] * len(inputs)
    for i, g in zip(wanted, grads):
        out[i] = g
    return tuple(out)


def run(layers, running, x, params):
    """The chain's output, carrying the BlockLink of a last block for its consumer.
    The caller has decided the chain may run (fastgan.nn.FusedSequential)."""
    in_link = _blocks.incoming_link(x) if type(layers[0]) is BlockLayer else None
    out_link = BlockLink() if type(layers[-1]) is BlockLayer else None
    y = _apply(layers, running, in_link, out_link, x, *params)
    if out_link is not None and y.requires_grad:
        out_link.version = y._version
        setattr(y, _blocks.LINK_ATTRIBUTE, out_link)
    return y
