"""The cluster simulator: drives the same ``baige.sched`` cycle on a simulated clock.

``load_scenario(path)`` reads a scenario file (``kind: Simulation``, see ``docs/sim.md``);
``run_scenario`` replays it as a timeline, ``run_inflation_scenario`` runs the FGD paper's
inflation experiment. Both drive :class:`baige.sched.incremental.Scheduler`, which returns
what ``run_cycle`` would for each pass. ``baige sim`` is the command line on top.
"""

from baige.sim.engine import Engine, EngineConfig, FaultModel, Loss, RestartCosts
from baige.sim.inflation import InflationCurve, InflationResult
from baige.sim.policies import PLACEMENT_POLICIES, get_policy, policy_names
from baige.sim.progress import Checkpointing, Segment
from baige.sim.run import RunOutput, run_inflation_scenario, run_scenario
from baige.sim.scenario import LoadedScenario, Scenario, load_scenario, parse_scenario

__all__ = [
    "PLACEMENT_POLICIES",
    "Checkpointing",
    "Engine",
    "EngineConfig",
    "FaultModel",
    "InflationCurve",
    "InflationResult",
    "LoadedScenario",
    "Loss",
    "RestartCosts",
    "RunOutput",
    "Scenario",
    "Segment",
    "get_policy",
    "load_scenario",
    "parse_scenario",
    "policy_names",
    "run_inflation_scenario",
    "run_scenario",
]
