"""The README must keep showing the two commands and the committed benchmark tables."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_shows_the_main_job_and_the_test_command():
    assert "make train" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert "\ntrain:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_benchmark_tables_match_committed_results():
    tables = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    assert tables, "no committed benchmark results"
    for table in tables:
        assert table.read_text().strip() in README, f"README is out of step with {table.name}"


def test_readme_ablation_tables_match_committed_results():
    for name, command in (("ablation", "make ablation"), ("ablation_shift", "make ablation-shift")):
        table = ROOT / "train" / "results" / f"{name}.md"
        assert table.is_file(), f"no committed {name} ({command})"
        assert table.read_text().strip() in README, f"README is out of step with train/results/{name}.md"
