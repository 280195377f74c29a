"""Fault tests: real servers of the tests' own are killed, stopped and restarted under load."""
