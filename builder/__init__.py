"""lambda-layer-builder: heavy Python stacks as AWS Lambda layers.

The pipeline, in the order a recipe goes through it:
recipe.py (TOML -> Recipe) -> backends/ (resolve + install for the runtime's
tags) -> strip.py (rules as data, measured) -> bytecode.py -> verify.py (ELF
glibc check, smoke test) -> measure.py (sizes, budget) -> archive.py
(reproducible zip) -> build.py ties them together; cli.py is the only place
that prints.
"""

__version__ = "0.1.0"
