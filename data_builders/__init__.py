"""Data builders: raw public 3D datasets -> DepthLMBench records."""
