"""Confidential computing: TEE mode detection, evidence collection and offline verification.

This package never imports `node` or `webui`. Until its modules land, the agent reports each
GPU's confidential-computing mode as NVML gives it (`GpuSnapshot.cc_mode`) and advertises no TEE.
"""
