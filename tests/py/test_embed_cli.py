"""`lctl embed` on the real all-MiniLM-L6-v2: vectors equal transformers' mean-pooled,
L2-normalized embeddings (tests/golden/minilm_embeddings.json, made by
scripts/gen_golden.py with transformers + torch) within the fixture's tolerance."""
import json

import numpy as np
import pytest

from conftest import ROOT, run


def test_embed_matches_transformers(lctl, models_dir):
    d = models_dir / "all-MiniLM-L6-v2"
    if not d.is_dir():
        pytest.skip(f"SKIPPED: {d} absent (scripts/fetch_models.sh minilm)")
    ref = json.loads((ROOT / "tests" / "golden" / "minilm_embeddings.json").read_text())
    args = [lctl, "embed", d, "-t", "2"]
    for c in ref["cases"]:
        args += ["--text", c["text"]]
    r = run(args)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().strip().split("\n")
    assert len(lines) == len(ref["cases"])
    for line, c in zip(lines, ref["cases"]):
        got = np.array(json.loads(line))
        want = np.array(c["embedding"])
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) < ref["tol"], c["text"]
        assert abs(np.linalg.norm(got) - 1.0) < 1e-5


def test_embed_refuses_language_models(lctl, shared_data):
    r = run([lctl, "embed", shared_data / "stories260K.bin", "--text", "hi"])
    assert r.returncode != 0


def test_embed_usage(lctl):
    assert run([lctl, "embed", "--help"]).returncode == 0
    assert run([lctl, "embed"]).returncode == 2
