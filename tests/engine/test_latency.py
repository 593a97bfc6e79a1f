"""Latency for comparisons: the fastest run, and every network timed again in turns so
that a busy stretch of the computer costs each of them a turn, not one its only one."""

from __future__ import annotations

import threading

import torch
from torch import nn

from finetune_studio.engine.latency import LATENCY_BATCHES, TIMING_AGAIN, TURNS, time_in_turns


def tiny_network() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_each_network_keeps_the_fastest_of_its_first_timing_and_its_turns() -> None:
    networks = [(tiny_network(), 16), (tiny_network(), 16)]
    slow_first = [(1e6, 1e6), (1e-9, 1e-9)]  # a busy first timing; an impossible one
    work = time_in_turns(networks, slow_first, torch.device("cpu"), threading.Event(), 0.01)
    stages = []
    while True:
        try:
            stages.append(next(work))
        except StopIteration as finished:
            fastest = finished.value
            break
    assert [s.done for s in stages] == list(range(TURNS * len(networks) + 1))
    assert {s.stage for s in stages} == {TIMING_AGAIN}
    assert all(0 < ms < 1e6 for ms in fastest[0])  # the turns replaced the busy timing
    assert fastest[1] == (1e-9,) * len(LATENCY_BATCHES)  # never above the first


def test_timing_in_turns_stops_on_cancel() -> None:
    cancel = threading.Event()
    cancel.set()
    work = time_in_turns([(tiny_network(), 16)], [(1.0, 1.0)], torch.device("cpu"), cancel, 0.01)
    next(work)
    try:
        next(work)
    except StopIteration as finished:
        assert finished.value is None
    else:
        raise AssertionError("a cancelled timing went on")
