"""The synchronous API; the public names are re-exported by :mod:`trio_mqtt.sync`."""
