"""flowkeeper: an OVS overlay agent and control plane that recovers flows in seconds."""

__version__ = "0.1.0"
