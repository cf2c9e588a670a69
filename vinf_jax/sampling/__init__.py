"""Sampling: diffusion schedulers as pure, jittable step functions matching diffusers' schedules."""

from vinf_jax.sampling.schedulers import SCHEDULER_KINDS, SchedulerSpec, Solver, SolverState, make_solver

__all__ = ["SCHEDULER_KINDS", "SchedulerSpec", "Solver", "SolverState", "make_solver"]
