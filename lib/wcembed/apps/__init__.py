"""Entry points: they may import anything of the package, and nothing imports them.

========== ==================================================================
cli        ``python -m wcembed ...`` (and the ``wcembed`` command)
demo       ``make demo``: the whole pipeline offline on the sample region
========== ==================================================================
"""
