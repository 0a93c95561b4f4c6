"""The event vocabulary, the envelope and codec, upcasters, and the event-log port with its adapters."""
