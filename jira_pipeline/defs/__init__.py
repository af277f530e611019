"""The Dagster hall: resources, partitions, assets, checks, jobs and schedules."""

import warnings

from dagster import BetaWarning, PreviewWarning

# `backfill_policy` and pools are flagged beta/preview in Dagster 1.13; we rely on them deliberately.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
