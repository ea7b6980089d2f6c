"""Benchmarks of trio-mqtt against other Python MQTT clients (run ``python bench/run.py``)."""
