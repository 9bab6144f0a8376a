"""The same page as Markdown; the plots are the PNG files beside it."""

__all__ = ["render_md"]


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _block(block):
    kind = block["type"]
    if kind in ("h1", "h2", "h3"):
        return f"{'#' * int(kind[1])} {block['text']}"
    if kind == "p":
        return block["text"]
    if kind == "list":
        return "\n".join(f"- {item}" for item in block["items"])
    if kind == "table":
        lines = ["| " + " | ".join(map(_cell, block["headers"])) + " |",
                 "|" + "|".join("---" for _ in block["headers"]) + "|"]
        return "\n".join(lines + ["| " + " | ".join(map(_cell, row)) + " |" for row in block["rows"]])
    if kind == "image":
        return f"![{block['caption']}]({block['file']})\n\n*{block['caption']}*"
    if kind == "missing":
        return f"> **MISSING**: {block['what']}  \n> to produce: `{block['command']}`"
    raise ValueError(f"unknown block type {kind!r}")


def render_md(blocks):
    return "\n\n".join(_block(b) for b in blocks) + "\n"
