"""azr: Absolute Zero self-play reasoning with a fast sandboxed executor and an embeddable verifier.

Public entry points live in their own modules so that importing one part never drags in another:
``azr.executor`` (the sandbox), ``azr.verify`` (answer checking for any RLVR stack), ``azr.errors``.
"""

__version__ = "0.1.0"
