"""The flowkeeper control-plane server: REST API, watch streams, targeted fan-out."""
