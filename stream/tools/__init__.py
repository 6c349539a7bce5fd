"""Operator tools: the demo, the load tester and its baselines, embedded services, reports."""
