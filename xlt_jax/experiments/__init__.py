"""Experiment drivers built on the binaries: the BZ/BS/MZ protocol runner and the report renderer."""
