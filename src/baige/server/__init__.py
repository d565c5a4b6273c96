"""The REST API (FastAPI) that ``baige up`` serves."""
