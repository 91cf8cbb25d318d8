"""Verify: prove the stripped tree loads in Lambda's runtime image, not merely on this machine.

``elf`` reads ELF headers (needed libraries, RPATH/RUNPATH, symbol versions,
load segments); ``loadcheck`` resolves every DT_NEEDED as Lambda's ld.so
would against ``lambda_os.toml``'s table of the runtime image, and checks the
GLIBC/GLIBCXX/CXXABI/GCC ceilings; ``repair`` grafts a library the image
lacks into the layer where its own needs fit; ``interpreters`` finds a host
interpreter of the runtime's Python version; ``smoke`` runs the recipe's
smoke test, on the pip backend inside ``sandbox`` (bubblewrap, only the
table's libraries visible). The Docker backend's smoke test runs in the
runtime image itself (``backends/runtime_image.py``).
"""
