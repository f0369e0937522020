"""The generated sections of benchmarks/RESULTS.md match their generators."""

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
    assert "**Main job**" in section and "**Benchmark suite**" in section
