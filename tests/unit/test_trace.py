"""Trace pruning's pure part: what stays once the workload's files are known."""

from builder.trace import keep_set


def test_keep_set_holds_loaded_files_their_libraries_touched_sources_and_metadata():
    files = {
        "numpy/__init__.py": 1, "numpy/core/_multiarray.so": 10, "numpy/core/unused.so": 10,
        "numpy/testing/util.py": 1, "numpy/.libs/libopenblas.so": 30,
        "scipy/__init__.py": 1, "scipy/linalg/_flapack.so": 20,
        "numpy-1.16.6.dist-info/METADATA": 1, "scipy-1.5.4.dist-info/METADATA": 1,
        "six.py": 1,
    }
    loaded = {"numpy/__init__.py", "numpy/core/_multiarray.so", "six.py"}
    closure = loaded | {"numpy/.libs/libopenblas.so"}
    keep = keep_set(files, loaded, closure)
    assert keep == {
        "numpy/__init__.py", "numpy/core/_multiarray.so", "numpy/.libs/libopenblas.so",
        "numpy/testing/util.py",  # every .py of a touched package
        "six.py",
        "numpy-1.16.6.dist-info/METADATA", "scipy-1.5.4.dist-info/METADATA",
    }
    assert "numpy/core/unused.so" not in keep and "scipy/linalg/_flapack.so" not in keep
