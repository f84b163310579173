"""The claims: one file a source document, `test_<source>.py` (`pal2021a` = doc 000, `pal2021b` = 001, `he2016` =
002, `fastai2018` = 003, `jovian` = 004), and `test_cross.py` the claims several documents share. Each claim is a
test that the claims engine's pytest plugin (`claims/plugin.py`, registered by `claims/conftest.py` when the entry
point is not installed) judges over paired seeds: `pytest claims` or `nox -s claims`."""
