"""Pure folds from events to read views, and the workers that apply them to stores and caches."""
