"""One self-contained HTML page: inline CSS, plots embedded as base64 PNG, no network access.

A small script marks ``<body data-images="ok N/N">`` once every image has decoded (or
``broken K/N``), so a headless browser can prove the page renders whole.
"""

import base64
import html
import re
from pathlib import Path

__all__ = ["render_html"]

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; border-bottom: 2px solid #3a7; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 1em 0 .3em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .6em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #eef5f0; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f2f2f2; padding: 0 3px; border-radius: 3px; font-size: 12px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 12px; }
.ok { color: #16702e; font-weight: bold; }
.bad { color: #b00020; font-weight: bold; }
.missing { background: #fff4d6; border-left: 4px solid #e0a800; padding: .4em .8em; margin: .5em 0; }
tr td.missing { background: #fff4d6; border-left: 1px solid #ccc; font-weight: bold; }
"""

CHECK = """
<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  document.body.dataset.images = (broken.length ? "broken " + broken.length : "ok " + images.length)
    + "/" + images.length;
});
</script>
"""

_STATUS = {"SIGNED OFF": "ok", "FAILED": "bad", "MISSING": "missing"}


def _inline(text):
    """Escaped text with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text), quote=False))


def _cell(tag, text):
    css = _STATUS.get(str(text))
    return f"<{tag}{f' class={css!r}' if css else ''}>{_inline(text)}</{tag}>"


def _image(path):
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).stem)}">'


def _block(block, folder):
    kind = block["type"]
    if kind in ("h1", "h2"):
        return f'<{kind} id="{block["id"]}">{_inline(block["text"])}</{kind}>'
    if kind == "h3":
        return f"<h3>{_inline(block['text'])}</h3>"
    if kind == "p":
        return f"<p>{_inline(block['text'])}</p>"
    if kind == "list":
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block["items"]) + "</ul>"
    if kind == "table":
        head = "".join(_cell("th", h) for h in block["headers"])
        body = "".join("<tr>" + "".join(_cell("td", c) for c in row) + "</tr>" for row in block["rows"])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if kind == "image":
        return f"<figure>{_image(Path(folder) / block['file'])}<figcaption>{_inline(block['caption'])}" \
               f"</figcaption></figure>"
    if kind == "missing":
        return (f'<div class="missing"><b>MISSING</b>: {_inline(block["what"])}<br>'
                f'to produce: <code>{html.escape(block["command"])}</code></div>')
    raise ValueError(f"unknown block type {kind!r}")


def render_html(blocks, folder, sections):
    """The page; ``folder`` holds the PNG files the image blocks name."""
    title = next(b["text"] for b in blocks if b["type"] == "h1")
    nav = "<nav>" + "".join(f'<a href="#{name}">{html.escape(heading)}</a>' for name, heading in sections) \
          + "</nav>"
    body = "\n".join(_block(b, folder) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n{nav}\n{body}\n{CHECK}</body>\n</html>\n")
