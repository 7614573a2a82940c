"""The file-format reference is generated from the spec classes and must match them."""

from kinsim.docgen import BEGIN, END, SECTIONS, render_reference, section_keys

from .conftest import ROOT

DOC = ROOT / "docs" / "file-formats.md"


def test_generated_reference_is_current():
    text = DOC.read_text(encoding="utf-8")
    generated = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert generated == render_reference().strip(), "run: python -m kinsim.docgen docs/file-formats.md"


def test_every_key_has_a_meaning_and_appears_in_the_doc():
    text = DOC.read_text(encoding="utf-8")
    for _, cls in SECTIONS:
        for key in section_keys(cls):
            assert key.doc.strip(), key.path
            assert f"`{key.path}`" in text, f"{key.path} is not documented in {DOC.name}"


def test_metrics_glossary_is_current_and_covers_every_reported_key():
    from kinsim.docgen import METRICS_BEGIN
    from kinsim.metrics import METRIC_DOCS, OPTIONAL_SECTIONS, expand_key, render_metrics_table
    from kinsim.runner import simulate

    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    generated = text.split(METRICS_BEGIN, 1)[1].split(END, 1)[0].strip()
    assert generated == render_metrics_table().strip(), "run: python -m kinsim.docgen docs/metrics.md"

    result = simulate(ROOT / "workloads" / "aime_bon32.yaml", ROOT / "hardware" / "h100.yaml",
                      {"requests.problems": 2, "requests.max_output_tokens": 200}).to_dict()
    documented = [key for pattern, _, _ in METRIC_DOCS for key in expand_key(pattern)]

    def leaves(obj, prefix=""):
        for key, value in obj.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and path not in documented:
                yield from leaves(value, path + ".")
            else:
                yield path

    reported = list(leaves(result))
    for key in reported:
        assert any(key == d or key.startswith(d + ".") for d in documented), f"{key} is not in docs/metrics.md"
    for key in documented:
        if key.split(".")[0] in OPTIONAL_SECTIONS:  # reported only with their feature on (test_speculative.py)
            assert key.split(".")[0] not in result
            continue
        assert any(r == key or r.startswith(key + ".") for r in reported), f"{key} is documented but not reported"
    for pattern, _unit, definition in METRIC_DOCS:
        assert definition.strip(), pattern
