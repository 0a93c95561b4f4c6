"""The write API: validates commands, decides them against aggregate state, appends the events."""
