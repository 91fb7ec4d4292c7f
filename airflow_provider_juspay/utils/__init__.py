"""Helpers shared by several roles (operators, sensors, notifiers), so that none imports another's
private module."""
