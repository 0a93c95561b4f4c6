"""The read API's routes."""
