"""The read API over the views: cache first, scaled separately, never writes to the event log."""
