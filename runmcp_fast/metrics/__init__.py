"""Metrics: counters kept in C on the hot path, read and rendered on a scrape.

- registry.py: each route's RouteStats, kept across config reloads;
- collect.py: one worker's numbers (routes, pools, plugins, config) as plain data;
- peers.py: the other workers' numbers, for a scrape any worker may answer;
- exposition.py: the Prometheus text format (rendered by prometheus_client).
"""
