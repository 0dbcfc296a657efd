"""poolwatch's edge sensor: live capture, rotating capture files and flow records in;
detections out to the lead API, exactly once, through a disk spool (docs/sensor.md).

``poolwatch sense`` runs it; :class:`Sensor` is the same thing for embedding. Nothing in
``poolwatch`` imports this package (the pipeline flows one way); the CLI imports it lazily.
"""

from .config import SensorConfig, load_config

__all__ = ["Sensor", "SensorConfig", "load_config"]


def __getattr__(name: str):
    # The sensor brings the detectors and httpx: imported when asked for, so that reading
    # a configuration (`poolwatch sense --check`) stays quick.
    if name == "Sensor":
        from .sensor import Sensor

        return Sensor
    raise AttributeError(name)
