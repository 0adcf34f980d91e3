"""The media benchmark still runs end to end (short windows; the real figures come from
`uv run python -m tests.bench.media_relay`)."""

from __future__ import annotations

import pytest

from tests.bench.media_relay import scenario


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode,record", [("encoded", True), ("transcode", False)])
async def test_media_relay_bench_runs(mode, record):
    result = await scenario(mode, calls=1, seconds=2, record=record, processes=1)
    assert result["delivered"] > 0.9
    assert result["cpu_s_per_call_min"] > 0 and result["lat_p50_ms"] > 0
