"""Verify: prove the stripped tree loads on the target runtime.

``elf`` reads ELF headers (needed libraries, symbol versions, load segments);
``interpreters`` finds a host interpreter of the runtime's Python version;
``smoke`` runs the recipe's smoke test and the GLIBC ceiling check.
"""
