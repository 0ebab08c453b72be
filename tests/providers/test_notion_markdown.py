"""Notion block trees to Markdown: every supported type, nesting, and visible placeholders."""

from __future__ import annotations

from typing import Any

import pytest

from arkyra.providers.content.notion_markdown import (
    blocks_to_markdown,
    plain_text,
    render_block,
    rich_text_to_markdown,
)


def rt(text: str, *, href: str | None = None, **annotations: bool) -> dict[str, Any]:
    return {
        "type": "text",
        "text": {"content": text, "link": {"url": href} if href else None},
        "annotations": annotations,
        "plain_text": text,
        "href": href,
    }


def block(kind: str, text: str | None = None, children: list | None = None, **value: Any) -> dict:
    if text is not None:
        value["rich_text"] = [rt(text)]
    return {
        "object": "block",
        "type": kind,
        kind: value,
        "has_children": bool(children),
        "children": children or [],
    }


# -- rich text -------------------------------------------------------------------------------


def test_rich_text_annotations_and_links() -> None:
    parts = [
        rt("plain "),
        rt("bold", bold=True),
        rt(" "),
        rt("it", italic=True),
        rt(" "),
        rt("gone", strikethrough=True),
        rt(" "),
        rt("x = 1", code=True),
        rt(" "),
        rt("site", href="https://example.com"),
        rt(" both ", bold=True, italic=True),
    ]
    assert rich_text_to_markdown(parts) == (
        "plain **bold** *it* ~~gone~~ `x = 1` [site](https://example.com) ***both*** "
    )


def test_inline_equation_and_plain_text() -> None:
    parts = [rt("E is "), {"type": "equation", "equation": {"expression": "mc^2"}}]
    assert rich_text_to_markdown(parts) == "E is $mc^2$"
    assert plain_text(parts) == "E is mc^2"
    assert plain_text(None) == ""


# -- one block type at a time ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (block("paragraph", "Hello"), "Hello"),
        (block("heading_1", "One"), "# One"),
        (block("heading_2", "Two"), "## Two"),
        (block("heading_3", "Three"), "### Three"),
        (block("bulleted_list_item", "Item"), "- Item"),
        (block("numbered_list_item", "Step"), "1. Step"),
        (block("to_do", "Done", checked=True), "- [x] Done"),
        (block("to_do", "Open", checked=False), "- [ ] Open"),
        (block("quote", "Wise words"), "> Wise words"),
        (
            block("callout", "Careful", icon={"type": "emoji", "emoji": "⚠️"}),
            "> ⚠️ Careful",
        ),
        (block("callout", "No icon"), "> No icon"),
        (block("code", "print(1)", language="python"), "```python\nprint(1)\n```"),
        (block("code", "just text", language="plain text"), "```\njust text\n```"),
        (block("divider"), "---"),
        (block("toggle", "Closed"), "<details>\n<summary>Closed</summary>\n\n</details>"),
        (block("equation", expression="a^2+b^2"), "$$\na^2+b^2\n$$"),
        (
            block("image", type="external", external={"url": "https://x/img.png"}, caption=[]),
            "![https://x/img.png](https://x/img.png)",
        ),
        (
            block("bookmark", url="https://example.com", caption=[rt("Example")]),
            "[Example](https://example.com)",
        ),
        (block("child_page", title="Sub page"), "[page: Sub page]"),
    ],
)
def test_each_supported_block(given: dict, expected: str) -> None:
    assert render_block(given) == expected


def test_code_with_backticks_uses_a_longer_fence() -> None:
    rendered = render_block(block("code", "```\ninner\n```", language="markdown"))
    assert rendered.startswith("````markdown\n")
    assert rendered.endswith("\n````")


def test_table_with_header_row() -> None:
    rows = [
        {"type": "table_row", "table_row": {"cells": [[rt("Name")], [rt("Reach")]]}},
        {"type": "table_row", "table_row": {"cells": [[rt("a|b")], [rt("1")]]}},
    ]
    table = block("table", None, rows, table_width=2, has_column_header=True)
    assert render_block(table) == "| Name | Reach |\n| --- | --- |\n| a\\|b | 1 |"


def test_table_without_header_gets_an_empty_one_and_pads_short_rows() -> None:
    rows = [{"type": "table_row", "table_row": {"cells": [[rt("only")]]}}]
    table = block("table", None, rows, table_width=2, has_column_header=False)
    assert render_block(table) == "|  |  |\n| --- | --- |\n| only |  |"


# -- nesting and grouping -------------------------------------------------------------------


def test_nested_lists_indent_children() -> None:
    tree = [
        block(
            "bulleted_list_item",
            "Parent",
            [block("bulleted_list_item", "Child", [block("to_do", "Grandchild", checked=True)])],
        ),
        block("numbered_list_item", "First", [block("paragraph", "Under first")]),
        block("numbered_list_item", "Second"),
    ]
    assert blocks_to_markdown(tree) == (
        "- Parent\n  - Child\n    - [x] Grandchild\n\n1. First\n   Under first\n2. Second\n"
    )


def test_numbering_restarts_after_another_block() -> None:
    tree = [
        block("numbered_list_item", "a"),
        block("numbered_list_item", "b"),
        block("paragraph", "break"),
        block("numbered_list_item", "c"),
    ]
    assert blocks_to_markdown(tree) == "1. a\n2. b\n\nbreak\n\n1. c\n"


def test_toggle_quote_and_callout_render_their_children() -> None:
    tree = [
        block("toggle", "More", [block("paragraph", "Hidden"), block("bulleted_list_item", "x")]),
        block("quote", "Said", [block("paragraph", "more said")]),
        block("callout", "Note", [block("bulleted_list_item", "inside")]),
        block("heading_2", "Toggle heading", [block("paragraph", "under heading")]),
    ]
    assert blocks_to_markdown(tree) == (
        "<details>\n<summary>More</summary>\n\nHidden\n\n- x\n\n</details>\n"
        "\n"
        "> Said\n>\n> more said\n"
        "\n"
        "> Note\n>\n> - inside\n"
        "\n"
        "## Toggle heading\n\nunder heading\n"
    )


def test_columns_and_synced_blocks_render_their_content() -> None:
    columns = block(
        "column_list",
        None,
        [
            block("column", None, [block("paragraph", "left")]),
            block("column", None, [block("paragraph", "right")]),
        ],
    )
    synced = block("synced_block", None, [block("paragraph", "synced")])
    assert blocks_to_markdown([columns, synced]) == "left\n\nright\n\nsynced\n"


def test_unknown_block_becomes_a_visible_placeholder_with_its_children() -> None:
    tree = [
        block("paragraph", "before"),
        block("ai_block", None, [block("paragraph", "kept child")]),
        {"object": "block", "type": "unsupported", "unsupported": {}, "has_children": False},
        block("paragraph", "after"),
    ]
    assert blocks_to_markdown(tree) == (
        "before\n\n"
        "> [unsupported block: ai_block]\n\nkept child\n\n"
        "> [unsupported block: unsupported]\n\n"
        "after\n"
    )


def test_block_without_a_type_is_still_visible() -> None:
    assert render_block({"object": "block"}) == "> [unsupported block: unknown]"


def test_empty_tree_is_empty_markdown() -> None:
    assert blocks_to_markdown([]) == ""
