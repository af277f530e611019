"""A faithful local fake of Atlassian's OAuth 2.0 (3LO) server, API gateway and Jira Cloud REST v3.

Point the pipeline at it with ``ATLASSIAN_AUTH_URL = ATLASSIAN_API_URL = sim.url``::

    from jira_pipeline_tests.simulator import Simulator, SimConfig

    with Simulator(SimConfig(seed=1, issues=300, worklogs=900)) as sim:
        ...                      # sim.url, sim.sites, sim.truth(), sim.mutate(...), sim.advance(...)

Standalone: ``python -m jira_pipeline_tests.simulator --port 8080 --issues 5000``.
See README.md in this folder for the behaviours reproduced and the knobs.
"""

from .config import SimConfig, Site
from .server import Simulator, Stats

__all__ = ["SimConfig", "Simulator", "Site", "Stats"]
