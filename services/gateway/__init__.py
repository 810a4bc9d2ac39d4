"""A local stand-in for the cloud STT services (LiveKit Inference, Cartesia); see server.py."""
