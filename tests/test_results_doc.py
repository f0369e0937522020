"""The generated sections of benchmarks/RESULTS.md match their generators."""

import shutil

import pytest

from benchmarks import results_doc, sweep_defaults


def test_main_job_section_is_what_its_generator_writes_now():
    # Rendered from the committed sweep.json and results.json alone: if a
    # result file or the generator changed without a re-render, this fails.
    section = sweep_defaults.render_section().strip()
    document = results_doc.RESULTS_PATH.read_text()

    assert f"<!-- BEGIN main-job -->\n{section}\n<!-- END main-job -->" in document
    assert "(chosen)" in section and "| baseline |" in section


def test_write_section_replaces_only_its_block(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# t\n\nprose\n\n<!-- BEGIN a -->\nold\n<!-- END a -->\ntail\n")

    results_doc.write_section("a", "new", path)
    results_doc.write_section("b", "appended", path)

    assert path.read_text() == (
        "# t\n\nprose\n\n<!-- BEGIN a -->\nnew\n<!-- END a -->\ntail\n\n"
        "<!-- BEGIN b -->\nappended\n<!-- END b -->\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]


def test_readme_results_are_what_the_summary_writes_now():
    from benchmarks import summary

    section = summary.render().strip()
    readme = summary.README.read_text()

    begin, end = "<!-- BEGIN readme-results -->", "<!-- END readme-results -->"
    assert f"{begin}\n{section}\n{end}" in readme
    assert "**Main job**" in section
    assert "**Benchmark suite offline-quick**" in section
    assert "**Benchmark suite offline-full**" in section


@pytest.mark.parametrize("suite_name", ["offline-quick", "offline-full"])
def test_suite_section_is_what_its_generator_writes_now(suite_name, tmp_path):
    # The report also redraws plots and summary.csv beside the cell files, so
    # it runs on a copy: the check must not touch the committed results.
    from benchmarks import suite, suite_report

    # Every suite's folder is copied: a section also counts the other suites'
    # finished cells.
    committed = suite.RESULTS_ROOT / suite_name
    assert committed.is_dir(), f"no committed cell files under {committed}"
    shutil.copytree(suite.RESULTS_ROOT, tmp_path, dirs_exist_ok=True)

    section = suite_report.write_report(
        suite_name, tmp_path, path=tmp_path / "RESULTS.md"
    ).strip()
    document = results_doc.RESULTS_PATH.read_text()

    marker = f"suite-{suite_name}"
    block = f"<!-- BEGIN {marker} -->\n{section}\n<!-- END {marker} -->"
    assert block in document
