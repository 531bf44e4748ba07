"""Benchmarks and a demo for MCP Token Bridge (``just bench``, ``just demo``); not part of the package.

``python -m bench`` measures the relay against a bare h11 server on the same machine, in one run;
``python -m bench.demo`` streams one answer through the real path with a canned model.
"""
