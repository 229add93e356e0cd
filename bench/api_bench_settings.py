"""The production settings with the benchmark's URLconf (`bench.api_bench_urls`) as the root.

`bench/api_bench.py` starts gunicorn with `DJANGO_SETTINGS_MODULE=bench.api_bench_settings`;
nothing else differs from `neuronx.settings`.
"""

from neuronx.settings import *  # noqa: F403

ROOT_URLCONF = "bench.api_bench_urls"
