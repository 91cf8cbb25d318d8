"""Strip: make the installed tree smaller without breaking an import.

``rules`` applies the recipe's rules (data, each measured) to the tree;
``symbols`` strips shared objects and restores any the tool broke;
``imports`` indexes which modules import which, so unimported code can go;
``bytecode`` compiles with the runtime's own Python; ``trace`` prunes to
what a workload touched, proving each drop by running it.
"""
