"""The study domain: studies, cases, reader sessions, readings, the reading UI, the coordinator pages, the API."""
