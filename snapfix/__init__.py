"""The shared kernel of SnapFix: settings, logging, wiring and HTTP plumbing used by every role."""
