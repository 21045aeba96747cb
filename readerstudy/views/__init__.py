"""Server-rendered pages: the reader's reading screen and the coordinator's study pages."""
