"""``vtfpar``: one command for the service, the trainer and the tools (``vtfpar --help`` lists them).

This package sits above ``app``, ``model`` and ``training`` and is imported by none of them.
"""
