"""Notion block trees to Markdown (GitHub flavour), with no gaps.

Input is a list of Notion block objects as the API returns them, where a block whose children were
fetched carries them under an extra ``"children"`` key (see ``NotionProvider.block_tree``).
Every block type either renders or becomes a visible placeholder
(``> [unsupported block: <type>]``): content is never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Block = dict[str, Any]

INDENT = "  "
LIST_TYPES = frozenset({"bulleted_list_item", "numbered_list_item", "to_do"})
CONTAINER_TYPES = frozenset({"column_list", "column", "synced_block"})


# -- rich text --------------------------------------------------------------------------------


def plain_text(rich_text: Iterable[dict[str, Any]] | None) -> str:
    """The unformatted text of a rich-text array (used for titles and code)."""
    return "".join(_segment_text(part) for part in rich_text or ())


def _segment_text(part: dict[str, Any]) -> str:
    if part.get("plain_text") is not None:
        return str(part["plain_text"])
    kind = part.get("type")
    if kind == "text":
        return str((part.get("text") or {}).get("content", ""))
    if kind == "equation":
        return str((part.get("equation") or {}).get("expression", ""))
    return ""


def rich_text_to_markdown(rich_text: Iterable[dict[str, Any]] | None) -> str:
    """Rich text with its annotations (bold, italic, strike, code) and links as Markdown."""
    return "".join(_segment_markdown(part) for part in rich_text or ())


def _segment_markdown(part: dict[str, Any]) -> str:
    text = _segment_text(part)
    if not text:
        return ""
    if part.get("type") == "equation":
        return f"${text}$"
    notes = part.get("annotations") or {}
    if notes.get("code"):
        text = f"`{text}`"
    # Markers must hug the words: keep surrounding spaces outside them.
    core = text.strip()
    if core and (notes.get("bold") or notes.get("italic") or notes.get("strikethrough")):
        lead = text[: len(text) - len(text.lstrip())]
        trail = text[len(text.rstrip()) :]
        if notes.get("strikethrough"):
            core = f"~~{core}~~"
        if notes.get("italic"):
            core = f"*{core}*"
        if notes.get("bold"):
            core = f"**{core}**"
        text = f"{lead}{core}{trail}"
    href = part.get("href") or ((part.get("text") or {}).get("link") or {}).get("url")
    if href:
        text = f"[{text}]({href})"
    return text


# -- blocks -----------------------------------------------------------------------------------


def blocks_to_markdown(blocks: Iterable[Block]) -> str:
    """Render sibling blocks (and their children) as one Markdown document."""
    text = _render_siblings(list(blocks)).strip("\n")
    return f"{text}\n" if text else ""


def _render_siblings(blocks: list[Block]) -> str:
    """Blocks separated by blank lines, except items of one list which stay together."""
    chunks: list[str] = []
    previous: str | None = None
    number = 0
    for block in blocks:
        kind = str(block.get("type") or "unknown")
        number = number + 1 if kind == "numbered_list_item" and previous == kind else 1
        rendered = render_block(block, number=number)
        if chunks and not _same_list(previous, kind):
            chunks.append("\n")
        chunks.append(rendered.rstrip("\n") + "\n")
        previous = kind
    return "".join(chunks)


def _same_list(previous: str | None, kind: str) -> bool:
    """Whether ``kind`` continues the list ``previous`` belongs to (no blank line between)."""
    if previous not in LIST_TYPES or kind not in LIST_TYPES:
        return False
    return (previous == "numbered_list_item") == (kind == "numbered_list_item")


def render_block(block: Block, *, number: int = 1) -> str:
    """One block and its children as Markdown; unknown types become a visible placeholder."""
    kind = str(block.get("type") or "unknown")
    renderer = _RENDERERS.get(kind)
    if renderer is None:
        if kind in CONTAINER_TYPES:
            return _children(block)
        return _placeholder(kind, block)
    return renderer(block, number)


def _placeholder(kind: str, block: Block) -> str:
    lines = [f"> [unsupported block: {kind}]"]
    nested = _children(block)
    return "\n".join([*lines, "", nested] if nested else lines)


def _value(block: Block) -> dict[str, Any]:
    return block.get(str(block.get("type"))) or {}


def _text(block: Block) -> str:
    return rich_text_to_markdown(_value(block).get("rich_text"))


def _children(block: Block) -> str:
    return _render_siblings(block.get("children") or []).strip("\n")


def _indent(text: str, prefix: str = INDENT) -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _with_nested(head: str, block: Block, prefix: str = INDENT) -> str:
    nested = _children(block)
    return f"{head}\n{_indent(nested, prefix)}" if nested else head


def _paragraph(block: Block, _: int) -> str:
    return _with_nested(_text(block), block)


def _heading(level: int) -> Callable[[Block, int], str]:
    def render(block: Block, _: int) -> str:
        head = f"{'#' * level} {_text(block)}".rstrip()
        nested = _children(block)  # toggleable headings carry children
        return f"{head}\n\n{nested}" if nested else head

    return render


def _bulleted(block: Block, _: int) -> str:
    return _with_nested(f"- {_text(block)}", block)


def _numbered(block: Block, number: int) -> str:
    marker = f"{number}. "
    return _with_nested(f"{marker}{_text(block)}", block, " " * len(marker))


def _to_do(block: Block, _: int) -> str:
    mark = "x" if _value(block).get("checked") else " "
    return _with_nested(f"- [{mark}] {_text(block)}", block)


def _quote_block(block: Block, _: int) -> str:
    nested = _children(block)
    body = f"{_text(block)}\n\n{nested}" if nested else _text(block)
    return _quote(body)


def _callout(block: Block, _: int) -> str:
    icon = _value(block).get("icon") or {}
    emoji = icon.get("emoji") if icon.get("type") == "emoji" else None
    head = f"{emoji} {_text(block)}" if emoji else _text(block)
    nested = _children(block)
    return _quote(f"{head}\n\n{nested}" if nested else head)


def _code(block: Block, _: int) -> str:
    value = _value(block)
    language = str(value.get("language") or "")
    language = "" if language == "plain text" else language.replace(" ", "-")
    code = plain_text(value.get("rich_text"))
    fence = "````" if "```" in code else "```"
    return f"{fence}{language}\n{code}\n{fence}"


def _divider(block: Block, _: int) -> str:
    return "---"


def _toggle(block: Block, _: int) -> str:
    nested = _children(block)
    summary = f"<details>\n<summary>{_text(block)}</summary>"
    return f"{summary}\n\n{nested}\n\n</details>" if nested else f"{summary}\n\n</details>"


def _table(block: Block, _: int) -> str:
    value = _value(block)
    rows = [_cells(row) for row in block.get("children") or [] if row.get("type") == "table_row"]
    width = int(value.get("table_width") or max((len(r) for r in rows), default=0))
    if width == 0:
        return "> [empty table]"
    rows = [row + [""] * (width - len(row)) for row in rows]
    if value.get("has_column_header") and rows:
        header, body = rows[0], rows[1:]
    else:
        header, body = [""] * width, rows
    lines = [_row(header), _row(["---"] * width), *(_row(r) for r in body)]
    return "\n".join(lines)


def _cells(row: Block) -> list[str]:
    cells = (row.get("table_row") or {}).get("cells") or []
    return [rich_text_to_markdown(cell).replace("|", "\\|").replace("\n", "<br>") for cell in cells]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _equation(block: Block, _: int) -> str:
    return f"$$\n{_value(block).get('expression', '')}\n$$"


def _media(block: Block, _: int) -> str:
    value = _value(block)
    url = _file_url(value) or value.get("url") or ""
    caption = plain_text(value.get("caption")) or url
    prefix = "!" if block.get("type") == "image" else ""
    return f"{prefix}[{caption}]({url})"


def _file_url(value: dict[str, Any]) -> str | None:
    kind = value.get("type")
    if kind in ("file", "external"):
        return (value.get(kind) or {}).get("url")
    return None


def _child_page(block: Block, _: int) -> str:
    kind = "page" if block.get("type") == "child_page" else "database"
    return f"[{kind}: {_value(block).get('title') or 'Untitled'}]"


_RENDERERS: dict[str, Callable[[Block, int], str]] = {
    "paragraph": _paragraph,
    "heading_1": _heading(1),
    "heading_2": _heading(2),
    "heading_3": _heading(3),
    "bulleted_list_item": _bulleted,
    "numbered_list_item": _numbered,
    "to_do": _to_do,
    "quote": _quote_block,
    "callout": _callout,
    "code": _code,
    "divider": _divider,
    "toggle": _toggle,
    "table": _table,
    "equation": _equation,
    "image": _media,
    "video": _media,
    "file": _media,
    "pdf": _media,
    "bookmark": _media,
    "embed": _media,
    "link_preview": _media,
    "child_page": _child_page,
    "child_database": _child_page,
}
