"""fastgan.train.checkpoint's Trainer-state helpers alone: the layout pack() writes
reads back through load(), restore_rng() replays every random stream, and
load_optimizer() takes the saved state but keeps how the optimizer runs."""

import pytest
import torch
from torch import nn

from fastgan.train import checkpoint as ckpt
from fastgan.train.ema import EMA
from fastgan.train.order import BatchOrder


class Tiny(nn.Linear):
    def config(self):
        return {"kind": "tiny"}


def adam(model, **kwargs):
    return torch.optim.Adam(model.parameters(), lr=1e-3, **kwargs)


def stepped(opt, model):
    model(torch.randn(3, model.in_features)).square().sum().backward()
    opt.step()
    return opt


@pytest.mark.parametrize("with_ema", [False, True])
def test_pack_writes_the_documented_layout_and_load_reads_it(tmp_path, with_ema):
    torch.manual_seed(0)
    g, d = Tiny(2, 3), Tiny(3, 1)
    ema = EMA(g, 0.9) if with_ema else None
    if ema is not None:
        ema.update(g)
        ema.update(g)
    noise, order = torch.Generator().manual_seed(1), BatchOrder(10, 2)
    state = ckpt.pack(step=4, d_steps=8, config={"run": {"x": 1}}, generator=g, discriminator=d, ema=ema,
                      g_optimizer=stepped(adam(g), g), d_optimizer=adam(d), noise=noise, order=order)
    ckpt.save_atomic(state, tmp_path / ckpt.FILE_NAME)
    back = ckpt.load(tmp_path)
    assert back["format"] == ckpt.FORMAT and back["version"] == ckpt.VERSION
    assert (back["step"], back["d_steps"], back["config"]) == (4, 8, {"run": {"x": 1}})
    assert set(back) == {"format", "version", "step", "d_steps", "config", "generator", "discriminator",
                         "generator_ema", "ema_updates", "g_optimizer", "d_optimizer", "rng"}
    assert torch.equal(back["generator"]["weight"], g.weight) and torch.equal(back["discriminator"]["bias"], d.bias)
    assert back["ema_updates"] == (2 if with_ema else 0) and (back["generator_ema"] is None) == (not with_ema)
    assert back["g_optimizer"]["state"][0]["step"] == 1 and back["d_optimizer"]["state"] == {}
    assert set(back["rng"]) == {"torch", "cuda", "noise", "order"}


def test_restore_rng_replays_every_stream():
    noise, order = torch.Generator().manual_seed(3), BatchOrder(7, 4)
    order.next(5)  # mid-epoch
    saved = ckpt.rng_state(noise, order)

    def draws():
        return torch.rand(4), torch.randn(4, generator=noise), order.next(6)

    first = draws()
    draws()  # the streams move on
    ckpt.restore_rng(saved, noise, order)
    again = draws()
    assert all(torch.equal(a, b) for a, b in zip(first, again))


class _MovedState:
    """A saved generator state as map_location="cuda" leaves it: set_state refuses it
    until it is brought back with .cpu() (a CPU-only stand-in for a CUDA tensor)."""

    def __init__(self, state):
        self.state = state

    def cpu(self):
        return self.state


def test_restore_rng_takes_states_a_checkpoint_load_moved_to_the_gpu():
    noise, order = torch.Generator().manual_seed(3), BatchOrder(7, 4)
    saved = ckpt.rng_state(noise, order)
    first = torch.rand(4), torch.randn(4, generator=noise)
    moved = dict(saved, torch=_MovedState(saved["torch"]), noise=_MovedState(saved["noise"]))
    ckpt.restore_rng(moved, noise, order)
    again = torch.rand(4), torch.randn(4, generator=noise)
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_load_optimizer_takes_the_state_but_keeps_how_the_update_runs():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    saved = stepped(adam(model, foreach=False), model).state_dict()
    saved["param_groups"][0]["lr"] = 5e-4
    fresh = adam(model, foreach=True)
    ckpt.load_optimizer(fresh, saved)
    assert fresh.param_groups[0]["foreach"] is True  # this optimizer's choice
    assert fresh.param_groups[0]["lr"] == 5e-4  # the saved hyperparameters
    assert torch.equal(fresh.state[model.weight]["exp_avg"], saved["state"][0]["exp_avg"])
    plain = adam(model, foreach=True)
    plain.load_state_dict(saved)
    assert plain.param_groups[0]["foreach"] is False  # what a plain load would have done
