"""The stylesheet's buttons: a variant (danger, secondary, small) must win over the base
`.button`, and no button may be white on white outside the dark top bar."""

import re
from pathlib import Path

from django.conf import settings

CSS = (Path(settings.BASE_DIR) / "static" / "css" / "sparklin.css").read_text()
TEMPLATES = Path(settings.BASE_DIR) / "templates"


def _rules():
    """(selector, body) pairs of the stylesheet, media queries flattened."""
    text = re.sub(r"/\*.*?\*/", "", CSS, flags=re.S)
    text = re.sub(r"@media[^{]*\{", "", text)
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"([^{}]+)\{([^{}]*)\}", text)]


def _properties(body: str) -> set[str]:
    return {d.split(":")[0].strip() for d in body.split(";") if ":" in d}


def _specificity(selector: str) -> tuple[int, int, int]:
    ids = selector.count("#")
    classes = len(re.findall(r"\.[\w-]+|\[[^\]]+\]|:(?!:)[\w-]+", selector))
    elements = len(re.findall(r"(?:^|[\s>+~])([a-z][\w-]*)", selector))
    return ids, classes, elements


def test_button_variants_outrank_the_base_button():
    rules = _rules()
    base = [
        (i, sel)
        for i, (group, _b) in enumerate(rules)
        for sel in group.split(",")
        if re.search(r"\.button(?![\w-])", sel) and ":" not in sel and "[" not in sel
    ]
    assert base, "no .button rule found"
    for variant in ("button-danger", "button-secondary", "button-small"):
        positions = [
            (i, sel.strip())
            for i, (group, _b) in enumerate(rules)
            for sel in group.split(",")
            if re.fullmatch(rf"\.{variant}", sel.strip())
        ]
        assert positions, f".{variant} has no rule"
        v_index, v_sel = positions[0]
        v_props = _properties(rules[v_index][1])
        for b_index, b_sel in base:
            if not (_properties(rules[b_index][1]) & v_props):
                continue  # e.g. spacing between buttons: nothing the variant sets
            assert _specificity(b_sel.strip()) <= _specificity(v_sel), (b_sel, v_sel)
            assert b_index < v_index, f"{b_sel} comes after .{variant}"


def test_sr_only_is_defined():
    assert any(".sr-only" in sel for sel, _b in _rules())


def test_linkbutton_is_only_white_in_the_top_bar():
    for selector, body in _rules():
        if ".linkbutton" in selector and "color: #fff" in body.replace("color:#fff", "color: #fff"):
            assert all(".topbar" in s for s in selector.split(",") if ".linkbutton" in s)


def test_no_emoji_icons_in_templates():
    for path in TEMPLATES.rglob("*.html"):
        assert "🗑" not in path.read_text(), path


def test_linkbutton_only_used_in_the_top_bar():
    for path in TEMPLATES.rglob("*.html"):
        if path.name == "base.html":
            continue
        assert "linkbutton" not in path.read_text(), f"{path}: a link-styled button on a white page"


def test_every_post_form_is_validated_by_the_server_only():
    """`novalidate` on every POST form: messages come from the server, in the person's language,
    never from the browser's bubbles in the browser's language."""
    for path in TEMPLATES.rglob("*.html"):
        for tag in re.findall(r"<form\b[^>]*>", path.read_text()):
            if re.search(r'method="?post', tag, re.I):
                assert "novalidate" in tag, f"{path}: {tag}"
