"""A faithful Zoho Billing simulator (accounts OAuth + Billing API + limits + fault injection)."""

from connectors.zoho_sim.config import SimConfig, SimFaults, SimLimits
from connectors.zoho_sim.server import SimHandle, run_in_thread, start_subprocess

__all__ = ["SimConfig", "SimFaults", "SimHandle", "SimLimits", "run_in_thread", "start_subprocess"]
