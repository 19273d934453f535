"""bench/render.py publishes RESULTS.md from a full run only (python3 -m unittest, from
scripts/test: the standard library is all it needs)."""

import os
import subprocess
import sys
import tempfile
import unittest

RENDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "render.py")
REDIS = "Redis server v=7.0.15 sha=0"


def render(out, rows, runs):
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as tsv:
        tsv.writelines("\t".join(map(str, row)) + "\n" for row in rows)
    return subprocess.run(
        [sys.executable, RENDER, "--out", out, tsv.name, str(runs), "100", "1", REDIS],
        capture_output=True, text=True,
    )


def rows(runs, sides=("redkit", "peer")):
    return [("cache_get", 1, side, run, 1000 + run) for run in range(1, runs + 1) for side in sides]


class PublishedResults(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.results = os.path.join(self.dir, "RESULTS.md")

    def test_a_quick_run_is_refused_and_writes_nothing(self):
        done = render(self.results, rows(1), 1)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("quick run", done.stderr)
        self.assertFalse(os.path.exists(self.results))

    def test_a_row_with_fewer_runs_than_declared_is_refused(self):
        done = render(self.results, rows(5) + [("lock", 1, "peer", 1, 10)], 5)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("lock c=1 peer: 1", done.stderr)
        self.assertFalse(os.path.exists(self.results))

    def test_a_full_run_is_published_with_its_medians(self):
        done = render(self.results, rows(5), 5)
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(self.results, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("median of 5 runs", text)
        self.assertIn("| redkit | 1,003 | 5 |", text)

    def test_a_quick_run_has_a_file_of_its_own(self):
        quick = os.path.join(self.dir, "RESULTS-quick.md")
        self.assertEqual(render(quick, rows(1), 1).returncode, 0)
        self.assertTrue(os.path.exists(quick))


if __name__ == "__main__":
    unittest.main()
