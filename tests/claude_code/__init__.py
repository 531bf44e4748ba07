"""Helpers for tests/test_claude_code.py: the real Claude Code CLI against a scripted fake model."""
