"""The media benchmark still runs end to end (short windows; the real figures come from
`uv run python -m tests.bench.media_relay`)."""

from __future__ import annotations

import pytest

from tests.bench.media_relay import lag_quantile_between, scenario


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode,record", [("encoded", True), ("transcode", False)])
async def test_media_relay_bench_runs(mode, record):
    result = await scenario(mode, calls=1, seconds=2, record=record, processes=1)
    assert result["delivered"] > 0.9
    assert result["cpu_s_per_call_min"] > 0 and result["lat_p50_ms"] > 0


@pytest.mark.faces
@pytest.mark.timeout(180)
async def test_identity_bench_runs(faces_dir):
    from tests.bench.identity import scenario, whole_call

    naive = await scenario(True, calls=1, rounds=1)
    ours = await scenario(False, calls=2, rounds=1)
    assert naive["verified"] == 1 and ours["verified"] == 2
    assert ours["p50_s"] > 0 and ours["analysis_cpu_per_call_s"] > 0
    call = await whole_call(False, seconds=3)
    assert call["verdicts"] == ["verified"] and call["cpu_s"] > 0


@pytest.mark.timeout(180)
def test_storage_bench_runs(capsys):
    from tests.bench.storage import main
    from tests.test_store_contract import _need_postgres

    _need_postgres()
    main(["--closes", "20", "--log-size", "100", "--track-mb", "4"])
    out = capsys.readouterr().out
    assert "PostgreSQL / SQLite" in out and "S3/filesystem" in out


@pytest.mark.faces
@pytest.mark.nodb
@pytest.mark.timeout(300)
def test_liveness_bench_runs(capsys, faces_dir):
    from tests.bench.liveness import main

    main(["--coop", "3", "--clips", "3", "--sim", "20"])
    out = capsys.readouterr().out
    assert "3 challenges: p50" in out and "mediapipe / dlib68" in out
    assert "passed 0/3" in out


@pytest.mark.faces
@pytest.mark.nodb
@pytest.mark.timeout(300)
def test_video_verify_bench_runs(capsys, faces_dir):
    from tests.bench.video_verify import main

    main(["--frames", "6", "--sizes", "80"])
    out = capsys.readouterr().out
    assert "face  80 px genuine" in out and "face  80 px impostor" in out


@pytest.mark.timeout(120)
def test_routing_redis_bench_runs(capsys):
    from tests.bench.routing_redis import main
    from tests.test_routing_contract import redis_client

    redis_client()  # skips without a Redis (not in CI, which requires one)
    result = main(waiting=300, tellers=20, decisions=50)
    assert 0 < result["redis_p50_us"] <= result["redis_p99_us"]
    assert "Redis / memory" in capsys.readouterr().out


def test_the_lag_over_a_window_comes_from_two_scrapes():
    def scrape(counts: list[int]) -> str:
        bounds = ["0.005", "0.01", "0.02", "0.05", "+Inf"]
        return "\n".join(f'vteller_event_loop_delay_seconds_bucket{{le="{b}",node="n"}} {c}.0'
                         for b, c in zip(bounds, counts, strict=True))

    before = scrape([10, 10, 12, 20, 30])  # set-up: 18 of 30 samples over 20 ms
    after = scrape([205, 207, 210, 219, 230])  # then 200 more: 195 <= 5 ms, 197 <= 10,
    # 198 <= 20, 199 <= 50
    assert lag_quantile_between(before, after, 0.5) == 0.005
    assert lag_quantile_between(before, after, 0.98) == 0.01
    assert lag_quantile_between(before, after, 0.99) == 0.02
    assert lag_quantile_between(scrape([0] * 5), after, 0.99) == float("inf")  # with set-up
    assert lag_quantile_between(scrape([0] * 5), after, 0.9) == 0.01
    assert lag_quantile_between(before, scrape([10, 10, 12, 20, 31]), 0.99) == float("inf")
