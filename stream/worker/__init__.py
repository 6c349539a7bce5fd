"""The Faust worker: the framework-free pipeline and runtime, and the thin Faust adapter."""
