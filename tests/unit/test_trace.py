"""Trace pruning's pure part: what stays once the workload's files are known."""

from builder.strip.trace import keep_set


def test_keep_set_holds_loaded_files_their_libraries_touched_sources_and_metadata():
    files = {
        "numpy/__init__.py": 1, "numpy/version.py": 1, "numpy/core/_multiarray.so": 10, "numpy/core/unused.so": 10,
        "numpy/core/_lazy.py": 1, "numpy/core/setup.py": 1, "numpy/testing/util.py": 1, "numpy/.libs/libopenblas.so": 30,
        "scipy/__init__.py": 1, "scipy/linalg/_flapack.so": 20,
        "numpy-1.16.6.dist-info/METADATA": 1, "scipy-1.5.4.dist-info/METADATA": 1,
        "six.py": 1,
    }
    loaded = {"numpy/__init__.py", "numpy/core/_multiarray.so", "six.py"}
    closure = loaded | {"numpy/.libs/libopenblas.so"}
    keep = keep_set(files, loaded, closure)
    assert keep == {
        "numpy/__init__.py", "numpy/core/_multiarray.so", "numpy/.libs/libopenblas.so",
        "numpy/version.py", "numpy/core/_lazy.py",  # every .py of a touched package (directory)
        "six.py",
        "numpy-1.16.6.dist-info/METADATA", "scipy-1.5.4.dist-info/METADATA",
    }
    assert "numpy/core/unused.so" not in keep and "scipy/linalg/_flapack.so" not in keep
    assert "numpy/testing/util.py" not in keep  # a package nothing imported
    assert "numpy/core/setup.py" not in keep  # a build script, not a module
