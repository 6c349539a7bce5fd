"""Synthetic transaction streams: the generator, its fraud scenarios, stream files, replay."""
