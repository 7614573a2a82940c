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
