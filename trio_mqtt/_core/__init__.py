"""The sans-IO protocol core: packet model, codec, topics and the session state machine.

Nothing in this package performs I/O or reads a clock, and nothing imports trio; a test checks
that. The public names are re-exported from :mod:`trio_mqtt.sansio`.
"""
