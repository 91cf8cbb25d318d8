"""lambda-layer-builder: heavy Python stacks as AWS Lambda layers.

The pipeline, in the order a recipe goes through it:
recipe.py (TOML -> Recipe) -> backends/ (resolve + install for the runtime's
tags) -> strip/ (rules as data, measured; symbols; bytecode; trace pruning)
-> verify/ (ELF checks, smoke test) -> measure.py (sizes, budget) ->
archive.py (reproducible zip); build.py ties them together. Then publish/
(check, plan, execute against AWS) and rebuild/ (when upstream moves). cli/
is the only place that prints; runtime/ is shipped inside layers.
errors.py, events.py and runner.py are the ground floor every stage uses.
"""

__version__ = "0.1.0"
