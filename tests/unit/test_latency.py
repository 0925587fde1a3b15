from hypothesis import given
from hypothesis import strategies as st

from bot.latency import LatencyGauge


def test_idle_gauge_expects_its_average():
    gauge = LatencyGauge(initial=0.3, parallelism=4)
    assert gauge.expected() == 0.3


def test_queue_beyond_parallelism_scales_the_estimate():
    gauge = LatencyGauge(initial=0.1, parallelism=2)
    with gauge.track(), gauge.track(), gauge.track():
        now = max(gauge._started.values())
        # two running, one waiting: the next one waits for two turns of the queue
        assert abs(gauge.expected(now) - 0.1 * (1 + 2 / 2)) < 1e-9
    assert gauge.inflight == 0


def test_a_call_running_longer_than_the_average_raises_the_estimate():
    gauge = LatencyGauge(initial=0.1, parallelism=4)
    with gauge.track():
        started = next(iter(gauge._started.values()))
        assert gauge.expected(started + 5.0) >= 5.0


def test_observe_moves_the_average_towards_the_sample():
    gauge = LatencyGauge(initial=1.0, parallelism=1, weight=0.5)
    gauge.observe(0.0)
    assert gauge.average == 0.5


@given(
    st.lists(st.floats(min_value=0, max_value=60), max_size=50),
    st.integers(min_value=0, max_value=40),
)
def test_estimate_is_never_below_the_average_and_grows_with_the_queue(samples, calls):
    gauge = LatencyGauge(initial=0.2, parallelism=4)
    for sample in samples:
        gauge.observe(sample)
    idle = gauge.expected()
    assert idle >= gauge.average - 1e-9
    contexts = [gauge.track() for _ in range(calls)]
    for context in contexts:
        context.__enter__()
    try:
        assert gauge.expected() >= idle - 1e-9
    finally:
        for context in contexts:
            context.__exit__(None, None, None)
