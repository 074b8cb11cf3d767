"""Shared vocabulary for method files: the contract, parameter schemas and pruning helpers."""
