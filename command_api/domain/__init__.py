"""The domain: aggregates that decide commands into events. Pure Python, no I/O, no clock."""
