"""Test support: harnesses only the tests, benches and fuzz targets use (the package keeps what users and
integrators run: the virtual card, the test CA, the synthetic patients, the reference service and the demo's
stack). Importable as `support` because tests/ is on sys.path (pytest's rootdir-relative imports; the bench
scripts add it)."""
