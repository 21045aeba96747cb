"""REST API (DRF) with the same permissions as the pages: readers see their own sessions, coordinators the rest."""
