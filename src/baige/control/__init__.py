"""The live control plane: the service layer the API calls, and the controller loop."""
