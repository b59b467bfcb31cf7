"""The demo pipeline: three chained components, computed once, then served from the store.

A *Stimulus* (a noisy periodic drive), a *Population* of leaky integrate-and-fire neurons that
it drives, and a *RateAnalysis* of the spikes. Each is a gitstore component: ``parameters`` (a
ParameterSet read from YAML), ``input`` (the component upstream) and ``version``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gitstore import GitDataStore, ParameterSet

try:
    import numpy as np
except ImportError:  # the demo runs without numpy too, on a smaller network
    np = None

PARAMS = Path(__file__).with_name("demo_params.yaml")
Progress = Callable[[str, float], None]


class Stimulus:
    full_type = "demo.Stimulus"  # a stable type name, whatever module defines the class
    version = "1"

    def __init__(self, parameters: ParameterSet) -> None:
        self.parameters = parameters
        self.input = None

    def compute(self, progress: Progress) -> Any:
        p = self.parameters
        steps = int(p.duration_ms / p.dt_ms)
        rng = random.Random(p.seed)
        drive = [p.amplitude * (0.5 + 0.5 * math.sin(2 * math.pi * p.rate_hz * i * p.dt_ms /
                                                     1000.0)) + 0.1 * rng.gauss(0, 1)
                 for i in range(steps)]
        progress("stimulus", 1.0)
        return np.array(drive) if np is not None else drive


class Population:
    full_type = "demo.Population"  # a stable type name, whatever module defines the class
    version = "1"

    def __init__(self, parameters: ParameterSet, input: Stimulus) -> None:
        self.parameters = parameters
        self.input = input

    def compute(self, drive: Any, dt: float, progress: Progress) -> Any:
        p = self.parameters
        n = p.n_neurons if np is not None else min(p.n_neurons, 40)
        steps = len(drive)
        if np is not None:
            rng = np.random.default_rng(p.seed)
            v = np.zeros(n)
            spikes_t, spikes_i = [], []
            decay = dt / p.tau_m_ms
            for step in range(steps):
                v += decay * (drive[step] - v) + p.noise * math.sqrt(decay) * \
                    rng.standard_normal(n)
                fired = np.nonzero(v >= p.v_threshold)[0]
                if fired.size:
                    v[fired] = p.v_reset
                    spikes_t.append(np.full(fired.size, step * dt))
                    spikes_i.append(fired)
                if step % 500 == 0:
                    progress("population", step / steps)
            progress("population", 1.0)
            return np.stack([np.concatenate(spikes_t), np.concatenate(spikes_i)])
        rng2 = random.Random(p.seed)
        vs = [0.0] * n
        spikes: list[list[float]] = [[], []]
        decay = dt / p.tau_m_ms
        for step in range(steps):
            for i in range(n):
                vs[i] += decay * (drive[step] - vs[i]) + p.noise * math.sqrt(decay) * \
                    rng2.gauss(0, 1)
                if vs[i] >= p.v_threshold:
                    vs[i] = p.v_reset
                    spikes[0].append(step * dt)
                    spikes[1].append(float(i))
            if step % 500 == 0:
                progress("population", step / steps)
        progress("population", 1.0)
        return spikes


class RateAnalysis:
    full_type = "demo.RateAnalysis"  # a stable type name, whatever module defines the class
    version = "1"

    def __init__(self, parameters: ParameterSet, input: Population) -> None:
        self.parameters = parameters
        self.input = input

    def compute(self, spikes: Any, duration: float, n: int, progress: Progress) -> Any:
        bins = int(duration / self.parameters.bin_ms)
        counts = [0] * bins
        for t in spikes[0]:
            counts[min(int(t / self.parameters.bin_ms), bins - 1)] += 1
        progress("analysis", 1.0)
        rates = [c / n / (self.parameters.bin_ms / 1000.0) for c in counts]
        return {"bin_ms": self.parameters.bin_ms, "rates_hz": rates,
                "mean_rate_hz": sum(rates) / len(rates)}


def build(params: ParameterSet) -> tuple[Stimulus, Population, RateAnalysis]:
    stimulus = Stimulus(params.stimulus)
    population = Population(params.population, stimulus)
    return stimulus, population, RateAnalysis(params.analysis, population)


def run(store: GitDataStore, params: ParameterSet, progress: Progress) -> dict[str, Any]:
    """Run the pipeline, taking every result the store already has; report what was computed."""
    stimulus, population, analysis = build(params)
    computed: list[str] = []
    t0 = time.perf_counter()

    def cached(component: Any, attribute: str, compute: Callable[[], Any]) -> Any:
        value = store.retrieve(component, attribute)
        if value is None:
            value = compute()
            store.store(component, attribute, value)
            computed.append(type(component).__name__)
        else:
            progress(type(component).__name__.lower(), 1.0)
        return value

    drive = cached(stimulus, "drive", lambda: stimulus.compute(progress))
    spikes = cached(population, "spikes",
                    lambda: population.compute(drive, params.stimulus.dt_ms, progress))
    n = params.population.n_neurons if np is not None else min(params.population.n_neurons, 40)
    rates = cached(analysis, "rates", lambda: analysis.compute(
        spikes, params.stimulus.duration_ms, n, progress))
    return {"computed": computed, "seconds": time.perf_counter() - t0,
            "mean_rate_hz": rates["mean_rate_hz"], "spikes": len(spikes[0]),
            "keys": [store.key_of(c) for c in (stimulus, population, analysis)]}
