"""The package's version, in a module of its own so that the engine can name it on the wire
(the User-Agent) without importing the front door above it; hatch reads it from here too."""

__version__ = "0.1.0"
