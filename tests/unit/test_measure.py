from builder.measure import Budget, Inventory, human, package_table
from builder.recipe import DIRECT_UPLOAD_LIMIT, UNZIPPED_LIMIT


def test_budget_limits():
    fits = Budget(unzipped=200 * 2**20, unzipped_limit=UNZIPPED_LIMIT - 10 * 2**20, reserve=10 * 2**20, zipped=60 * 2**20)
    assert fits.fits and not fits.direct_upload
    assert fits.to_json()["publish_via"].startswith("S3")
    over = Budget(unzipped=UNZIPPED_LIMIT, unzipped_limit=UNZIPPED_LIMIT - 1, reserve=1, zipped=DIRECT_UPLOAD_LIMIT)
    assert not over.fits and over.direct_upload and over.headroom == -1


def test_lambda_limits_are_mib():
    assert UNZIPPED_LIMIT == 250 * 2**20 and DIRECT_UPLOAD_LIMIT == 50 * 2**20


def test_package_table_uses_record_owners_then_top_level():
    before = Inventory({"numpy/a.so": 100, "numpy/tests/t.py": 50, "loose/x.py": 5}, {"numpy/a.so": "numpy", "numpy/tests/t.py": "numpy"})
    after = Inventory({"numpy/a.so": 60, "loose/x.py": 5}, before.owners)
    rows = package_table(before, after)
    assert rows[0] == {"package": "numpy", "installed_bytes": 150, "layer_bytes": 60}
    assert rows[1]["package"] == "loose"
    assert after.biggest(1) == [("numpy/a.so", 60)]


def test_sourceless_bytecode_belongs_to_its_sources_distribution():
    owners = {"PIL/Image.py": "pillow"}
    after = Inventory({"PIL/Image.pyc": 7}, owners)
    assert after.by_package() == {"pillow": 7}


def test_human():
    assert human(512) == "512 B" and human(3 * 2**20) == "3.0 MiB"
