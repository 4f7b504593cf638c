"""Benchmarks (`make bench`) and the fault-injection run (`make chaos`) of zoho-cdc.

Every scenario starts its own services (a Tansu broker on a free port, a fresh database, a Zoho
simulator) and removes them afterwards. Figures are ratios and counts measured within one run, so
they mean the same on a noisy 2-core machine; nothing here asserts a wall-clock time.
"""
