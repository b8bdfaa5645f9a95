"""What the two HTTP services (the collector and the lookups) share: transport limits, ``HEAD``
and Prometheus request metrics. Web-framework code, so it sits above the pure `stream.core`."""
