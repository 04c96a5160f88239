"""Learning-rate schedules agree with their closed forms and with Hugging Face, step by step."""

import io
import math

import pytest
import torch
import transformers

from wxb.errors import ConfigError
from wxb.train.schedules import SCHEDULER_NAMES, get_scheduler, lr_factor

BASE_LR = 0.1
# (num_warmup_steps, num_training_steps): no warm-up, usual, warm-up == total, warm-up > total
# (allowed, as in Hugging Face), and a one-step run.
STEPS = [(0, 10), (3, 12), (5, 5), (7, 4), (0, 1)]
# num_cycles per schedule; None means the schedule's default.
CYCLES = {
    "constant": [None],
    "constant_with_warmup": [None],
    "linear": [None],
    "cosine": [None, 0.25, 1.5, 2],
    "cosine_with_restarts": [None, 2, 3],
}
CASES = [
    (name, warmup, total, cycles)
    for name in SCHEDULER_NAMES
    for warmup, total in STEPS
    for cycles in CYCLES[name]
]


def expected_factor(name, step, warmup, total, cycles):
    """The schedules written out afresh from their definitions."""
    if name == "constant":
        return 1.0
    if step < warmup:
        return step / warmup
    if name == "constant_with_warmup":
        return 1.0
    length = max(total - warmup, 1)
    if name == "linear":
        return max((total - step) / length, 0.0)
    done = (step - warmup) / length
    if name == "cosine":
        cycles = 0.5 if cycles is None else cycles
        return (1.0 + math.cos(2.0 * math.pi * cycles * done)) / 2.0
    cycles = 1 if cycles is None else cycles
    if done >= 1.0:
        return 0.0
    within_cycle = done * cycles - math.floor(done * cycles)
    return (1.0 + math.cos(math.pi * within_cycle)) / 2.0


def lrs_over_run(make_scheduler, num_steps):
    """Learning rate in force at each optimizer step 0 .. num_steps - 1."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(num_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def kwargs_for(cycles):
    return None if cycles is None else {"num_cycles": cycles}


@pytest.mark.parametrize(("name", "warmup", "total", "cycles"), CASES)
def test_matches_closed_form_and_hugging_face(name, warmup, total, cycles):
    # Run past the end of training too: that is where the schedules differ most.
    num_steps = max(warmup, total) + 6
    ours = lrs_over_run(
        lambda opt: get_scheduler(
            name,
            opt,
            num_warmup_steps=warmup,
            num_training_steps=total,
            scheduler_specific_kwargs=kwargs_for(cycles),
        ),
        num_steps,
    )
    theirs = lrs_over_run(
        lambda opt: transformers.get_scheduler(
            name,
            opt,
            num_warmup_steps=warmup,
            num_training_steps=total,
            scheduler_specific_kwargs=kwargs_for(cycles),
        ),
        num_steps,
    )
    for step in range(num_steps):
        factor = lr_factor(
            name, step, num_warmup_steps=warmup, num_training_steps=total, num_cycles=cycles
        )
        expected = expected_factor(name, step, warmup, total, cycles)
        assert factor == pytest.approx(expected, abs=1e-12), step
        assert ours[step] == pytest.approx(BASE_LR * expected, abs=1e-12), step
        assert ours[step] == pytest.approx(theirs[step], abs=1e-12), step


def test_schedules_without_an_end_need_no_training_steps():
    assert lr_factor("constant", 5, num_warmup_steps=0, num_training_steps=None) == 1.0
    assert lr_factor("constant_with_warmup", 1, num_warmup_steps=4, num_training_steps=None) == 0.25
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    assert get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=2).get_last_lr() == [
        0.0
    ]


def test_state_dict_survives_weights_only_load():
    def make(opt):
        return get_scheduler(
            "cosine_with_restarts",
            opt,
            num_warmup_steps=2,
            num_training_steps=12,
            scheduler_specific_kwargs={"num_cycles": 2},
        )

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = make(optimizer)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    resumed = make(resumed_optimizer)
    resumed.load_state_dict(state)
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    for _ in range(10):
        assert resumed.get_last_lr() == scheduler.get_last_lr()
        for opt, sched in ((optimizer, scheduler), (resumed_optimizer, resumed)):
            opt.step()
            sched.step()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: lr_factor("cosin", 0, num_warmup_steps=0, num_training_steps=10),
            "unknown lr_scheduler_type 'cosin'; choose one of: constant, "
            "constant_with_warmup, linear, cosine, cosine_with_restarts",
        ),
        (
            lambda: lr_factor("linear", 0, num_warmup_steps=-1, num_training_steps=10),
            "num_warmup_steps must be 0 or more, got -1",
        ),
        (
            lambda: lr_factor("linear", 0, num_warmup_steps=1.5, num_training_steps=10),
            "num_warmup_steps must be a whole number of steps, got 1.5",
        ),
        (
            lambda: lr_factor("cosine", 0, num_warmup_steps=0, num_training_steps=None),
            "lr_scheduler_type 'cosine' decays to 0 and needs num_training_steps; "
            "give it, or use constant or constant_with_warmup",
        ),
        (
            lambda: lr_factor("linear", 0, num_warmup_steps=0, num_training_steps=-3),
            "num_training_steps must be 0 or more, got -3",
        ),
        (
            lambda: lr_factor("linear", 0, num_warmup_steps=0, num_training_steps=9, num_cycles=2),
            "num_cycles=2 does not apply to lr_scheduler_type 'linear'; "
            "it is for: cosine, cosine_with_restarts",
        ),
        (
            lambda: lr_factor("cosine", 0, num_warmup_steps=0, num_training_steps=9, num_cycles=0),
            "num_cycles must be a positive number, got 0",
        ),
        (
            lambda: get_scheduler(
                "cosine",
                torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR),
                num_training_steps=10,
                scheduler_specific_kwargs={"min_lr_rate": 0.1},
            ),
            "unknown scheduler_specific_kwargs 'min_lr_rate' for lr_scheduler_type 'cosine'; "
            "the only one supported is 'num_cycles' (for cosine, cosine_with_restarts)",
        ),
    ],
)
def test_bad_input_gets_one_clear_line(call, message):
    with pytest.raises(ConfigError) as caught:
        call()
    assert str(caught.value) == message
    assert "\n" not in message
