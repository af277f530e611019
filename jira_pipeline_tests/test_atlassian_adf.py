"""ADF -> Markdown: exact output per node and mark, escaping, nesting, malformed input, speed.

Exact-string cases pin the format the indexer sees. Two randomized checks go further and parse our
output with a real CommonMark parser (markdown-it-py, already installed with Dagster's `rich`): the
marks every character carries and the block structure must survive the round trip, which catches
escaping and delimiter bugs no hand-written table would think of. `hypothesis` is not installed,
so the fuzzers are seeded `random` generators (deterministic, reproducible from the seed).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from jira_pipeline.atlassian import adf
from jira_pipeline.atlassian.adf import adf_plain_text, adf_to_markdown, looks_like_raw_adf

# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

Node = dict[str, Any]


def mk(kind: str, *args: Any) -> dict[str, Any]:
    if kind == "link":
        attrs = {"href": args[0]} if len(args) < 2 else {"href": args[0], "title": args[1]}
        return {"type": "link", "attrs": attrs}
    if kind in ("sub", "sup"):
        return {"type": "subsup", "attrs": {"type": kind}}
    if kind in ("textColor", "backgroundColor"):
        return {"type": kind, "attrs": {"color": "#ff5630"}}
    return {"type": kind}


def t(text: Any, *marks: Any) -> Node:
    node: Node = {"type": "text", "text": text}
    if marks:
        node["marks"] = [m if isinstance(m, dict) else mk(m) for m in marks]
    return node


def p(*content: Any) -> Node:
    return {"type": "paragraph", "content": [t(c) if isinstance(c, str) else c for c in content]}


def doc(*blocks: Node) -> Node:
    return {"type": "doc", "version": 1, "content": list(blocks)}


def li(*blocks: Any) -> Node:
    return {"type": "listItem", "content": [p(b) if isinstance(b, str) else b for b in blocks]}


def ul(*items: Any) -> Node:
    return {"type": "bulletList", "content": [li(i) if isinstance(i, str) else i for i in items]}


def ol(*items: Any, order: Any = None) -> Node:
    node: Node = {"type": "orderedList", "content": [li(i) if isinstance(i, str) else i for i in items]}
    if order is not None:
        node["attrs"] = {"order": order}
    return node


def code(text: str, language: Any = None) -> Node:
    node: Node = {"type": "codeBlock", "content": [t(text)]}
    if language is not None:
        node["attrs"] = {"language": language}
    return node


def cell(*blocks: Any, header: bool = False, **attrs: Any) -> Node:
    return {
        "type": "tableHeader" if header else "tableCell",
        "attrs": attrs,
        "content": [p(b) if isinstance(b, str) else b for b in blocks],
    }


def row(*cells: Any) -> Node:
    return {"type": "tableRow", "content": [cell(c) if isinstance(c, str) else c for c in cells]}


def table(*rows: Node) -> Node:
    return {
        "type": "table",
        "attrs": {"isNumberColumnEnabled": False, "layout": "default"},
        "content": list(rows),
    }


def node(kind: str, content: Any = None, **attrs: Any) -> Node:
    n: Node = {"type": kind}
    if attrs:
        n["attrs"] = attrs
    if content is not None:
        n["content"] = content
    return n


def md(value: Any) -> str:
    out = adf_to_markdown(value)
    assert_clean(out)
    return out


def assert_clean(out: str) -> None:
    """Output invariants: stripped, no trailing whitespace, no double blank line outside code."""
    assert out == out.strip()
    in_fence = ""
    blank_run = 0
    for line in out.split("\n"):
        assert line == line.rstrip(), f"trailing whitespace in {line!r}"
        fence = re.match(r"^[ >]*(?:(?:[-*]|\d+[.)]) +)*(`{3,})", line)
        if fence and (not in_fence or fence.group(1).startswith(in_fence)):
            in_fence = "" if in_fence else fence.group(1)
        blank_run = blank_run + 1 if not line.strip(" >") and not in_fence else 0
        assert blank_run <= 1, f"two blank lines in a row in:\n{out}"
    assert not looks_like_raw_adf(out)
    assert "\x00" not in out


def assert_no_repr(out: str) -> None:
    assert "{'type'" not in out and '{"type"' not in out


# ---------------------------------------------------------------------------------------------
# marks
# ---------------------------------------------------------------------------------------------

MARK_CASES: list[tuple[str, list[Node], str]] = [
    ("plain", [t("just text")], "just text"),
    ("strong", [t("a "), t("bold", "strong"), t(" b")], "a **bold** b"),
    ("em", [t("an "), t("italic", "em"), t(" word")], "an *italic* word"),
    ("code", [t("run "), t("make test", "code"), t(" now")], "run `make test` now"),
    ("strike", [t("was "), t("old", "strike"), t(" new")], "was ~~old~~ new"),
    ("underline dropped", [t("an "), t("underlined", "underline"), t(" word")], "an underlined word"),
    ("textColor dropped", [t("red", "textColor"), t(" text")], "red text"),
    ("backgroundColor dropped", [t("hi", "backgroundColor"), t("ghlight")], "highlight"),
    ("sub", [t("H"), t("2", "sub"), t("O")], "H<sub>2</sub>O"),
    ("sup", [t("x"), t("2", "sup")], "x<sup>2</sup>"),
    ("link", [t("see "), t("docs", mk("link", "https://e.com/d"))], "see [docs](https://e.com/d)"),
    (
        "link with title",
        [t("docs", mk("link", "https://e.com", 'The "Docs"'))],
        '[docs](https://e.com "The \\"Docs\\"")',
    ),
    (
        "link text is url -> autolink",
        [t("https://e.com/x", mk("link", "https://e.com/x"))],
        "<https://e.com/x>",
    ),
    ("link with space in url", [t("f", mk("link", "https://e.com/a b"))], "[f](https://e.com/a%20b)"),
    ("link with balanced parens", [t("w", mk("link", "https://w.org/A_(b)"))], "[w](https://w.org/A_(b))"),
    ("link with unbalanced paren", [t("w", mk("link", "https://w.org/a)"))], "[w](https://w.org/a\\))"),
    ("link bracket in text", [t("a]b", mk("link", "https://e.com"))], "[a\\]b](https://e.com)"),
    (
        "link without text shows url",
        [t(" ", mk("link", "https://e.com/q"))],
        "[https://e.com/q](https://e.com/q)",
    ),
    ("link without href keeps text", [t("txt", {"type": "link", "attrs": {}})], "txt"),
    ("code + link", [t("cfg", "code", mk("link", "https://e.com/c"))], "[`cfg`](https://e.com/c)"),
    ("bold + italic", [t("both", "strong", "em")], "***both***"),
    ("bold + link", [t("go", "strong", mk("link", "https://e.com"))], "[**go**](https://e.com)"),
    ("bold + code", [t("x()", "strong", "code")], "**`x()`**"),
    ("strike + em", [t("gone", "strike", "em")], "*~~gone~~*"),
    (
        "nested stretch keeps outer mark open",
        [t("bold ", "strong"), t("both", "strong", "em"), t(" more", "strong")],
        "**bold *both* more**",
    ),
    ("spaces go outside delimiters", [t("x"), t(" bold ", "strong"), t("y")], "x **bold** y"),
    ("whitespace-only mark: no ****", [t("a"), t("  ", "strong"), t("b")], "a  b"),
    ("adjacent runs merge", [t("bo", "strong"), t("ld", "strong", "textColor")], "**bold**"),
    ("code with backtick", [t("a`b", "code")], "``a`b``"),
    ("code starting with backtick", [t("`x", "code")], "`` `x ``"),
    ("code with double backticks", [t("``", "code")], "``` `` ```"),
    ("strong not flanking -> html", [t("a"), t("(b)", "strong"), t("c")], "a<strong>(b)</strong>c"),
    ("intraword em -> html", [t("un"), t("believ", "em"), t("able")], "un<em>believ</em>able"),
    ("strong after colon", [t("Note:", "strong"), t(" read")], "**Note:** read"),
    (
        "hard break closes marks",
        [t("a", "strong"), {"type": "hardBreak"}, t("b", "strong")],
        "**a**\\\n**b**",
    ),
    ("unicode verbatim", [t("日本語 עברית 😀 café")], "日本語 עברית 😀 café"),
    ("mark given as bare string", [{"type": "text", "text": "s", "marks": ["strong"]}], "**s**"),
    ("unknown mark ignored", [t("x", {"type": "annotation", "attrs": {"id": "1"}})], "x"),
]


@pytest.mark.parametrize(("inline", "expected"), [c[1:] for c in MARK_CASES], ids=[c[0] for c in MARK_CASES])
def test_marks(inline: list[Node], expected: str) -> None:
    assert md(doc(p(*inline))) == expected


# ---------------------------------------------------------------------------------------------
# escaping
# ---------------------------------------------------------------------------------------------

ESCAPE_CASES: list[tuple[str, str]] = [
    ("# not a heading", "\\# not a heading"),
    ("###### six", "\\###### six"),
    ("#hashtag", "#hashtag"),
    ("1. not a list", "1\\. not a list"),
    ("1986. A good year", "1986\\. A good year"),
    ("3) also not", "3\\) also not"),
    ("- not a bullet", "\\- not a bullet"),
    ("+ nor this", "\\+ nor this"),
    ("* nor this", "\\* nor this"),
    ("> not a quote", "\\> not a quote"),
    ("---", "\\---"),
    ("===", "\\==="),
    ("snake_case_name stays", "snake_case_name stays"),
    ("__init__", "\\_\\_init\\_\\_"),
    ("_maybe emphasis_", "\\_maybe emphasis\\_"),
    ("2*3 = 6", "2\\*3 = 6"),
    ("a * b", "a * b"),
    ("*not em*", "\\*not em\\*"),
    ("~~not struck~~", "\\~\\~not struck\\~\\~"),
    ("~5 minutes", "\\~5 minutes"),
    ("use `ls`", "use \\`ls\\`"),
    ("[not](a link)", "\\[not](a link)"),
    ("<div> tag", "\\<div> tag"),
    ("a < b > c", "a < b > c"),
    ("&amp; entity", "\\&amp; entity"),
    ("AT&T", "AT&T"),
    ("C:\\Users\\me", "C:\\Users\\me"),
    ("trailing \\", "trailing \\\\"),
    ("\\*", "\\\\\\*"),
    ("Great!", "Great!"),
    ("   leading spaces", "leading spaces"),
    ('json {"type": "doc"}', 'json \\{"type": "doc"}'),
    ("a {b} c", "a {b} c"),
    ("x | y", "x | y"),
]


@pytest.mark.parametrize(("text", "expected"), ESCAPE_CASES, ids=[c[0] for c in ESCAPE_CASES])
def test_escaping(text: str, expected: str) -> None:
    assert md(doc(p(text))) == expected


def test_escaping_at_every_line_start_and_before_links() -> None:
    assert md(doc(p(t("first\n# second\n1. third")))) == "first\n\\# second\n1\\. third"
    assert md(doc(p(t("a"), {"type": "hardBreak"}, t("- b")))) == "a\\\n\\- b"
    assert md(doc(p(t("Look!"), t("here", mk("link", "https://e.com"))))) == "Look\\![here](https://e.com)"
    status = {"type": "status", "attrs": {"text": "done"}}
    assert md(doc(p(status, t("(x)")))) == "[DONE]\\(x)"
    assert md(doc(p(status, t(": finished")))) == "[DONE]\\: finished"
    assert md(doc({"type": "heading", "attrs": {"level": 2}, "content": [t("C #")]})) == "## C \\#"


# ---------------------------------------------------------------------------------------------
# block and inline nodes
# ---------------------------------------------------------------------------------------------

MEDIA_FILE = node("media", id="3f1a-77b0", type="file", collection="jira-1", alt="screen shot.png")

NODE_CASES: list[tuple[str, Node, str]] = [
    ("heading 1", node("heading", [t("Title")], level=1), "# Title"),
    ("heading 3 with marks", node("heading", [t("A "), t("b", "em")], level=3), "### A *b*"),
    ("heading level clamped", node("heading", [t("Deep")], level=9), "###### Deep"),
    ("heading without level", {"type": "heading", "content": [t("H")]}, "# H"),
    (
        "heading hard break -> space",
        node("heading", [t("a"), {"type": "hardBreak"}, t("b")], level=2),
        "## a b",
    ),
    ("empty heading dropped", node("heading", [], level=2), ""),
    ("paragraph hard break", p(t("one"), {"type": "hardBreak"}, t("two")), "one\\\ntwo"),
    ("trailing hard breaks dropped", p(t("x"), {"type": "hardBreak"}, {"type": "hardBreak"}), "x"),
    (
        "double hard break collapses",
        p(t("x"), {"type": "hardBreak"}, {"type": "hardBreak"}, t("y")),
        "x\\\ny",
    ),
    ("empty paragraph dropped", p(), ""),
    ("rule", {"type": "rule"}, "---"),
    ("blockquote", node("blockquote", [p("quoted"), p("more")]), "> quoted\n>\n> more"),
    ("nested blockquote", node("blockquote", [node("blockquote", [p("deep")])]), "> > deep"),
    ("code block", code("print('hi')\n\n\nx = 1", "python"), "```python\nprint('hi')\n\n\nx = 1\n```"),
    ("code block no language", code("a\tb  "), "```\na\tb\n```"),
    ("code block containing fence", code("```\ninner\n```", "md"), "````md\n```\ninner\n```\n````"),
    ("code block with 4 backticks", code("````"), "`````\n````\n`````"),
    ("code language sanitized", code("x", "c++ `evil`"), "```c++\nx\n```"),
    ("code block keeps markdown chars", code("# *not* escaped_"), "```\n# *not* escaped_\n```"),
    (
        "code block with hard break",
        node("codeBlock", [t("a"), {"type": "hardBreak"}, t("b")]),
        "```\na\nb\n```",
    ),
    ("empty code block dropped", node("codeBlock", []), ""),
    ("panel info", node("panel", [p("Heads up")], panelType="info"), "> **Info:** Heads up"),
    ("panel note", node("panel", [p("n")], panelType="note"), "> **Note:** n"),
    ("panel warning", node("panel", [p("w"), p("x")], panelType="warning"), "> **Warning:** w\n>\n> x"),
    ("panel success", node("panel", [p("s")], panelType="success"), "> **Success:** s"),
    ("panel error", node("panel", [p("e")], panelType="error"), "> **Error:** e"),
    ("panel custom", node("panel", [p("c")], panelType="custom", panelIcon=":smile:"), "> **Note:** c"),
    ("panel unknown type", node("panel", [p("u")], panelType="fancy"), "> **Fancy:** u"),
    ("panel starting with list", node("panel", [ul("a")], panelType="info"), "> **Info:**\n>\n> - a"),
    ("expand", node("expand", [p("hidden")], title="More"), "**More**\n\nhidden"),
    ("nested expand no title", node("nestedExpand", [p("body")]), "body"),
    ("mention with text", p(node("mention", id="5b10", text="@Jane Doe")), "@Jane Doe"),
    ("mention text without @", p(node("mention", id="5b10", text="Jane")), "@Jane"),
    ("mention id only", p(node("mention", id="5b10ac8d82e05b22cc7d4ef5")), "@5b10ac8d82e05b22cc7d4ef5"),
    ("mention nothing", p(t("hi "), node("mention")), "hi @unknown"),
    ("mention escaped", p(node("mention", text="@a_*b")), "@a\\_\\*b"),
    ("emoji text", p(t("ok "), node("emoji", shortName=":smile:", text="😄")), "ok 😄"),
    ("emoji shortName", p(node("emoji", shortName=":thumbs_up:")), ":thumbs_up:"),
    (
        "inlineCard",
        p(t("see "), node("inlineCard", url="https://x.atlassian.net/browse/P-1")),
        "see <https://x.atlassian.net/browse/P-1>",
    ),
    (
        "inlineCard with data name",
        p(node("inlineCard", data={"url": "https://e.com/d", "name": "Doc [v2]"})),
        "[Doc \\[v2\\]](https://e.com/d)",
    ),
    ("blockCard", node("blockCard", url="https://e.com/card"), "<https://e.com/card>"),
    ("embedCard", node("embedCard", url="https://youtu.be/x", layout="wide"), "<https://youtu.be/x>"),
    (
        "mediaSingle file",
        node("mediaSingle", [MEDIA_FILE], layout="center"),
        "![screen shot.png](attachment:3f1a-77b0)",
    ),
    (
        "mediaSingle caption",
        node("mediaSingle", [MEDIA_FILE, node("caption", [t("Fig. 1")])]),
        "![screen shot.png](attachment:3f1a-77b0)\n\nFig. 1",
    ),
    (
        "media without alt",
        node("mediaSingle", [node("media", id="abc", type="file")]),
        "![attachment](attachment:abc)",
    ),
    (
        "media external",
        node("mediaSingle", [node("media", type="external", url="https://i.example/a.png")]),
        "![](https://i.example/a.png)",
    ),
    (
        "media name only",
        node("mediaSingle", [node("media", type="file", alt="report.pdf")]),
        "[attachment: report.pdf]",
    ),
    ("media nothing", node("mediaSingle", [node("media")]), "[attachment]"),
    ("empty mediaSingle", node("mediaSingle", []), "[attachment]"),
    (
        "media id quoted",
        node("mediaSingle", [node("media", id="a b)c", type="file")]),
        "![attachment](attachment:a%20b%29c)",
    ),
    (
        "media with link mark",
        node("mediaSingle", [{**MEDIA_FILE, "marks": [mk("link", "https://e.com")]}]),
        "[![screen shot.png](attachment:3f1a-77b0)](https://e.com)",
    ),
    (
        "mediaGroup",
        node("mediaGroup", [node("media", id="f1", type="file"), node("media", id="f2", type="file")]),
        "![attachment](attachment:f1)\n![attachment](attachment:f2)",
    ),
    (
        "mediaInline",
        p(t("file "), node("mediaInline", id="m1", type="file", alt="a.txt")),
        "file ![a.txt](attachment:m1)",
    ),
    ("status", p(t("is "), node("status", text="In Progress", color="blue")), "is [IN PROGRESS]"),
    ("empty status dropped", p(t("x"), node("status", text="")), "x"),
    ("date", p(t("due "), node("date", timestamp="1700000000000")), "due 2023-11-14"),
    ("date int", p(node("date", timestamp=1582156800000)), "2020-02-20"),
    ("date garbage kept", p(node("date", timestamp="soon")), "soon"),
    (
        "taskList",
        node(
            "taskList",
            [
                node("taskItem", [t("done thing")], localId="1", state="DONE"),
                node("taskItem", [t("todo thing")], localId="2", state="TODO"),
                node("taskList", [node("taskItem", [t("sub task")], state="TODO")]),
            ],
            localId="l",
        ),
        "- [x] done thing\n- [ ] todo thing\n  - [ ] sub task",
    ),
    (
        "decisionList",
        node("decisionList", [node("decisionItem", [t("Ship it")], state="DECIDED")]),
        "- **Decision:** Ship it",
    ),
    ("placeholder dropped", p(t("a"), node("placeholder", text="Type here"), t("b")), "ab"),
    ("extension text kept", node("extension", extensionKey="k", text="fallback"), "fallback"),
    ("extension without text dropped", node("extension", extensionKey="k", parameters={"a": 1}), ""),
    ("bodiedExtension", node("bodiedExtension", [p("body")], extensionKey="k"), "body"),
    ("inlineExtension", p(t("a "), node("inlineExtension", text="inline")), "a inline"),
    (
        "layout",
        node(
            "layoutSection",
            [node("layoutColumn", [p("left")], width=50), node("layoutColumn", [p("right")], width=50)],
        ),
        "left\n\nright",
    ),
    ("unknown block", {"type": "futureBlock", "content": [p("inside")]}, "inside"),
    ("unknown inline with text", p({"type": "futureInline", "text": "ft"}), "ft"),
    ("unknown inline wrapper", p({"type": "span", "content": [t("w", "strong")]}), "**w**"),
    (
        "unknown leaf with url",
        p({"type": "futureCard", "attrs": {"url": "https://e.com"}}),
        "<https://e.com>",
    ),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in NODE_CASES], ids=[c[0] for c in NODE_CASES])
def test_nodes(value: Node, expected: str) -> None:
    assert md(doc(value)) == expected


# ---------------------------------------------------------------------------------------------
# lists
# ---------------------------------------------------------------------------------------------


def test_simple_lists() -> None:
    assert md(doc(ul("a", "b"))) == "- a\n- b"
    assert md(doc(ol("a", "b"))) == "1. a\n2. b"
    assert md(doc(ol("a", "b", order=7))) == "7. a\n8. b"
    assert md(doc(ol("a", order=0))) == "0. a"
    assert md(doc(ol("a", order="x"))) == "1. a"


def test_nested_lists_three_deep_with_paragraphs() -> None:
    value = doc(
        ul(
            li(
                p("first"),
                p("second paragraph of first"),
                ol(
                    li(
                        p("one"),
                        ul(li(p("deep"), p("deep para")), "deep 2"),
                    ),
                    "two",
                ),
            ),
            "last",
        ),
        p("after"),
    )
    assert md(value) == (
        "- first\n"
        "\n"
        "  second paragraph of first\n"
        "  1. one\n"
        "     - deep\n"
        "\n"
        "       deep para\n"
        "     - deep 2\n"
        "  2. two\n"
        "- last\n"
        "\n"
        "after"
    )


def test_nested_ordered_list_not_starting_at_one_gets_blank_line() -> None:
    # "3." cannot interrupt a paragraph in CommonMark: without the blank line it would be text.
    assert md(doc(ul(li(p("parent"), ol("child", order=3))))) == "- parent\n\n  3. child"


def test_wide_ordered_markers_indent_their_content() -> None:
    items = [li(p(f"item {i}"), p("more")) for i in range(1, 11)]
    out = md(doc(ol(*items)))
    assert out.endswith("10. item 10\n\n    more")
    assert "9. item 9\n\n   more" in out


def test_adjacent_lists_do_not_merge() -> None:
    assert md(doc(ul("a"), ul("b"), ul("c"))) == "- a\n\n* b\n\n- c"
    assert md(doc(ol("a"), ol("b"))) == "1. a\n\n1) b"


def test_list_item_with_code_block_and_table() -> None:
    value = doc(ul(li(p("steps:"), code("make\nmake test", "sh"), table(row("a", "b")))))
    assert md(value) == (
        "- steps:\n\n  ```sh\n  make\n  make test\n  ```\n\n  |  |  |\n  | --- | --- |\n  | a | b |"
    )


def test_odd_list_shapes() -> None:
    assert md(doc(ul(li()))) == "-"
    assert md(doc(node("bulletList", [p("loose paragraph")]))) == "- loose paragraph"
    assert md(doc(node("bulletList", [li(p("a")), ul("nested directly")]))) == "- a\n  - nested directly"
    assert md(doc(li(p("orphan item")))) == "- orphan item"
    assert md(doc(node("taskItem", [t("orphan task")], state="DONE"))) == "- [x] orphan task"


def test_code_fence_in_blockquote_keeps_blank_lines_quoted() -> None:
    assert md(doc(node("blockquote", [code("a\n\nb")]))) == "> ```\n> a\n>\n> b\n> ```"


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------


def test_table_with_header_row() -> None:
    value = doc(
        table(row(cell("Name", header=True), cell("Value", header=True)), row("a", "1"), row("b", "2"))
    )
    assert md(value) == "| Name | Value |\n| --- | --- |\n| a | 1 |\n| b | 2 |"


def test_table_without_header_row_gets_empty_header() -> None:
    assert md(doc(table(row("a", "1"), row("b", "2")))) == "|  |  |\n| --- | --- |\n| a | 1 |\n| b | 2 |"


def test_table_pipes_breaks_and_multiple_blocks_in_cells() -> None:
    value = doc(
        table(
            row(cell("a|b", header=True), cell("c", header=True)),
            row(cell(p(t("x"), {"type": "hardBreak"}, t("y"))), cell(p("p1"), p("p2"))),
            row(cell(p(t("soft\nbreak"))), cell(p(t("a|b", "code")))),
            row(cell(ul("i1", "i2")), cell(code("l1\nl2|x"))),
        )
    )
    assert md(value) == (
        "| a\\|b | c |\n"
        "| --- | --- |\n"
        "| x<br>y | p1<br>p2 |\n"
        "| soft<br>break | `a\\|b` |\n"
        "| - i1<br>- i2 | `l1`<br>`l2\\|x` |"
    )


def test_table_colspan_and_rowspan_keep_columns_aligned() -> None:
    value = doc(
        table(
            row(cell("A", header=True), cell("B", header=True), cell("C", header=True)),
            row(cell("wide", colspan=2), "c1"),
            row(cell("tall", rowspan=2), "b2", "c2"),
            row("b3", "c3"),
            row("short"),
        )
    )
    assert md(value) == (
        "| A | B | C |\n"
        "| --- | --- | --- |\n"
        "| wide |  | c1 |\n"
        "| tall | b2 | c2 |\n"
        "|  | b3 | c3 |\n"
        "| short |  |  |"
    )


def test_degenerate_tables() -> None:
    assert md(doc(table())) == ""
    assert md(doc(table(row(cell())))) == ""
    assert md(doc(table(row(cell(colspan=10**9, rowspan=10**9))))) == ""
    assert md(doc(row("lonely"))) == "|  |\n| --- |\n| lonely |"
    assert md(doc(cell("bare cell"))) == "bare cell"
    assert md(doc({"type": "table", "content": [p("not a row")]})) == "|  |\n| --- |\n| not a row |"


# ---------------------------------------------------------------------------------------------
# a realistic Jira description end to end
# ---------------------------------------------------------------------------------------------


def test_realistic_description() -> None:
    value = doc(
        node("heading", [t("Summary")], level=2),
        p(
            t("When "),
            node("mention", id="557058:1", text="@Ana Ruiz"),
            t(" opens the "),
            t("Settings", "strong"),
            t(" page, the app crashes "),
            node("emoji", shortName=":scream:", text="😱"),
            t("."),
        ),
        node("heading", [t("Steps")], level=3),
        ol("Log in", li(p(t("Open "), t("/settings", "code"))), "Click *Save*"),
        node("panel", [p(t("Happens only on "), t("Safari 17", "em"), t("."))], panelType="warning"),
        code("TypeError: x is undefined\n    at save (app.js:10)", "text"),
        table(
            row(cell("Env", header=True), cell("Result", header=True)),
            row("prod", "❌"),
            row("staging", "✅"),
        ),
        p(t("Related: "), node("inlineCard", url="https://acme.atlassian.net/browse/WEB-12")),
    )
    assert md(value) == (
        "## Summary\n\n"
        "When @Ana Ruiz opens the **Settings** page, the app crashes 😱.\n\n"
        "### Steps\n\n"
        "1. Log in\n2. Open `/settings`\n3. Click \\*Save\\*\n\n"
        "> **Warning:** Happens only on *Safari 17*.\n\n"
        "```text\nTypeError: x is undefined\n    at save (app.js:10)\n```\n\n"
        "| Env | Result |\n| --- | --- |\n| prod | ❌ |\n| staging | ✅ |\n\n"
        "Related: <https://acme.atlassian.net/browse/WEB-12>"
    )
    assert adf_plain_text(value) == (
        "Summary\n\n"
        "When @Ana Ruiz opens the Settings page, the app crashes 😱.\n\n"
        "Steps\n\n"
        "Log in\n\nOpen /settings\n\nClick *Save*\n\n"
        "Happens only on Safari 17.\n\n"
        "TypeError: x is undefined\n    at save (app.js:10)\n\n"
        "Env\tResult\nprod\t❌\nstaging\t✅\n\n"
        "Related: https://acme.atlassian.net/browse/WEB-12"
    )


# ---------------------------------------------------------------------------------------------
# malformed input
# ---------------------------------------------------------------------------------------------

GOOD_DOC = doc(p(t("hello "), t("world", "strong")))


def _cyclic_doc() -> Node:
    para = p("cyc")
    para["content"].append(para)
    root = doc(para)
    root["content"].append(root)
    return root


def _cyclic_list() -> Node:
    content: list[Any] = [t("x")]
    content.append(content)
    return {"type": "paragraph", "content": content}


def _deep(kind: str, depth: int) -> Node:
    inner: Node = p("deep text")
    for i in range(depth):
        if kind == "blockquote":
            inner = node("blockquote", [inner])
        elif kind == "list":
            inner = ul(li(p(f"L{i}"), inner))
        else:
            inner = {"type": "wrapper", "content": [inner]}
    return doc(inner)


MALFORMED: list[tuple[str, Any, str]] = [
    ("None", None, ""),
    ("empty string", "", ""),
    ("blank string", " \n ", ""),
    ("empty dict", {}, ""),
    ("empty list", [], ""),
    ("bool", True, ""),
    ("object", object(), ""),
    ("int", 42, "42"),
    ("plain string passes through", "Legacy *wiki* text\n{code}x{code}", "Legacy *wiki* text\n{code}x{code}"),
    ("json string of adf", json.dumps(GOOD_DOC), "hello **world**"),
    ("double-encoded json", json.dumps(json.dumps(GOOD_DOC)), "hello **world**"),
    ("python repr of adf", repr(GOOD_DOC), "hello **world**"),
    ("bytes of json", json.dumps(GOOD_DOC).encode(), "hello **world**"),
    ("truncated json", json.dumps(GOOD_DOC)[:-12], "hello world"),
    ("json that is not adf", '{"foo": [1, 2]}', '{"foo": [1, 2]}'),
    ("quoted plain string", '"quoted"', '"quoted"'),
    ("list of nodes", [p("a"), p("b")], "a\n\nb"),
    ("list of inline nodes", [t("a "), t("b", "em")], "a *b*"),
    ("list of strings", ["x", "y"], "xy"),
    ("bare text node", t("solo"), "solo"),
    ("doc without content", {"type": "doc"}, ""),
    ("content is None", {"type": "doc", "content": None}, ""),
    ("content is a dict", {"type": "doc", "content": p("single")}, "single"),
    ("content is a string", {"type": "paragraph", "content": "str"}, "str"),
    ("nested lists in content", {"type": "doc", "content": [[p("a"), [p("b")]]]}, "a\n\nb"),
    ("None children", doc(None, p(None, t("x"), None), None), "x"),  # type: ignore[arg-type]
    ("text missing", {"type": "paragraph", "content": [{"type": "text"}]}, ""),
    ("text None", {"type": "paragraph", "content": [{"type": "text", "text": None}]}, ""),
    ("text is a number", {"type": "paragraph", "content": [{"type": "text", "text": 3.5}]}, "3.5"),
    ("text is a dict", {"type": "paragraph", "content": [{"type": "text", "text": {"type": "doc"}}]}, ""),
    ("type is not a string", {"type": 7, "content": [p("seven")]}, "seven"),
    ("no type at all", {"content": [{"text": "untyped"}]}, "untyped"),
    ("attrs wrong type", {"type": "heading", "attrs": "x", "content": [t("h")]}, "# h"),
    ("attrs None", {"type": "mention", "attrs": None}, "@unknown"),
    ("marks wrong type", {"type": "text", "text": "m", "marks": {"type": "strong"}}, "m"),
    ("marks with junk", {"type": "text", "text": "m", "marks": [None, 3, {"type": None}, "strong"]}, "**m**"),
    ("list content junk", ul(None, 5, "s", li()), "- 5\n- s\n-"),  # type: ignore[arg-type]
    ("order huge", ol("a", order=10**30), "999999999. a"),
    ("table junk rows", {"type": "table", "content": [None, {"type": "tableRow", "content": None}]}, ""),
    ("date overflow", p(node("date", timestamp=1e300)), "1e+300"),
    ("date nan", p(node("date", timestamp=float("nan"))), "nan"),
    ("cycle in dicts", _cyclic_doc(), "cyc"),
    ("cycle in lists", _cyclic_list(), "x"),
    ("NUL and CR in text", p(t("a\x00b\r\nc")), "ab\nc"),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_input(value: Any, expected: str) -> None:
    out = adf._to_markdown(value)  # the internal path: must cope without the last-resort guard
    assert out == expected
    assert adf_to_markdown(value) == expected
    assert_clean(out)
    assert_no_repr(out)
    assert isinstance(adf_plain_text(value), str)


@pytest.mark.parametrize("kind", ["blockquote", "list", "unknown"])
def test_deep_nesting_keeps_all_text(kind: str) -> None:
    value = _deep(kind, 3000)
    out = adf._to_markdown(value)
    assert_clean(out)
    assert "deep text" in out
    if kind == "list":
        assert "L0" in out and "L2999" in out
    plain = adf_plain_text(value)
    assert "deep text" in plain


def test_deeply_nested_json_string_does_not_raise() -> None:
    nested = '{"type": "doc", "content": ' + "[" * 50_000 + "]" * 50_000 + "}"
    assert adf_to_markdown(nested) == ""
    repr_nested = "{'type': 'doc', 'content': " + "[" * 5_000 + "]" * 5_000 + "}"
    assert adf_to_markdown(repr_nested) == ""
    truncated = '{"type":"doc","content":[{"type":"paragraph","content":[{"type":"text","text":"cut her'
    assert adf_to_markdown(truncated) == "cut her"


def test_last_resort_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_: Any) -> str:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(adf, "_to_markdown", boom)
    assert adf_to_markdown(GOOD_DOC) == "hello world"  # falls back to plain text, never raises


# ---------------------------------------------------------------------------------------------
# looks_like_raw_adf
# ---------------------------------------------------------------------------------------------

RAW_POSITIVE = [
    json.dumps(GOOD_DOC),
    json.dumps(GOOD_DOC, indent=2),
    repr(GOOD_DOC),
    "  " + json.dumps(GOOD_DOC),
    json.dumps([p("x")]),
    '{"version": 1, "type": "doc", "content": []}',
    "Description: {'type': 'paragraph', 'content': [{'type': 'text', 'text': 'x'}]}",
    'prefix "content": [ {"text": "x"} ]',
    json.dumps(GOOD_DOC)[:40],
]
RAW_NEGATIVE: list[str | None] = [
    None,
    "",
    "hello **world**",
    "# Title\n\n- item\n- [ ] task",
    "The field type is doc, content is empty",
    "```json\n" + json.dumps(GOOD_DOC) + "\n```",
    "  ~~~\n  {'type': 'doc', 'content': []}\n  ~~~",
    "inline `" + json.dumps(GOOD_DOC) + "` code",
    "Config {a: 1} and [link](http://x)",
    '{"foo": "bar"}',
]


@pytest.mark.parametrize("text", RAW_POSITIVE)
def test_looks_like_raw_adf_positive(text: str) -> None:
    assert looks_like_raw_adf(text)


@pytest.mark.parametrize("text", RAW_NEGATIVE)
def test_looks_like_raw_adf_negative(text: str | None) -> None:
    assert not looks_like_raw_adf(text)


def test_converted_output_is_never_flagged_as_raw() -> None:
    pasted = json.dumps(GOOD_DOC)
    value = doc(p(t("pasted: " + pasted)), p(t(pasted, "code")), code(pasted, "json"), ul(li(p(pasted))))
    out = md(value)
    assert pasted in out.replace("\\", "")  # the text survives (escaped) ...
    assert not looks_like_raw_adf(out)  # ... but cannot be mistaken for an unconverted field
    for _, value_, _ in NODE_CASES:
        assert not looks_like_raw_adf(md(doc(value_)))


# ---------------------------------------------------------------------------------------------
# plain text
# ---------------------------------------------------------------------------------------------


def test_plain_text() -> None:
    value = doc(
        p(
            t("Hi "),
            node("mention", text="@Bo"),
            t(" "),
            node("status", text="done"),
            t(" "),
            node("date", timestamp=0),
        ),
        ul("a", li(p("b"), ol("c"))),
        node("expand", [p("inside")], title="T"),
        code("x = 1"),
        node("mediaSingle", [MEDIA_FILE]),
        p(node("placeholder", text="Type here"), t("x", "strong"), {"type": "hardBreak"}, t("y")),
    )
    assert adf_plain_text(value) == (
        "Hi @Bo done 1970-01-01\n\na\n\nb\n\nc\n\nT\n\ninside\n\nx = 1\n\nscreen shot.png\n\nx\ny"
    )
    assert adf_plain_text(None) == ""
    assert adf_plain_text("  plain  ") == "plain"
    assert adf_plain_text(json.dumps(GOOD_DOC)) == "hello world"
    assert adf_plain_text(_cyclic_doc()) == "cyc"


# ---------------------------------------------------------------------------------------------
# size and speed
# ---------------------------------------------------------------------------------------------


def _big_doc(target_bytes: int) -> tuple[Node, list[str]]:
    blocks: list[Node] = []
    texts: list[str] = []
    i = 0
    size = 0
    while size < target_bytes:
        text = f"Paragraph {i} about snake_case and 2*3 with ünïcödé 漢字"
        texts.append(text)
        para = p(
            t(text + " "), t(f"bold{i}", "strong"), t(" see "), t("link", mk("link", f"https://e.com/{i}"))
        )
        if i % 7 == 3:
            blocks.append(ul(li(para), "sibling"))
        elif i % 11 == 5:
            blocks.append(table(row(cell(para), "x")))
        else:
            blocks.append(para)
        size += len(json.dumps(blocks[-1]))
        i += 1
    return doc(*blocks), texts


def test_200kb_document_is_complete_and_fast() -> None:
    value, texts = _big_doc(200_000)
    raw = json.dumps(value)
    assert len(raw) >= 200_000
    start = time.perf_counter()
    out = adf_to_markdown(raw)
    elapsed = time.perf_counter() - start
    assert_clean(out)
    for i, text in enumerate(texts):
        assert text.replace("2*3", "2\\*3") in out  # snake_case and unicode untouched
        assert f"**bold{i}**" in out
        assert f"[link](https://e.com/{i})" in out
    assert elapsed < 2.0, f"200 KB took {elapsed:.3f}s"


# ---------------------------------------------------------------------------------------------
# randomized: robustness and CommonMark round trips
# ---------------------------------------------------------------------------------------------

_TYPES = [
    "doc", "paragraph", "text", "hardBreak", "heading", "bulletList", "orderedList", "listItem",
    "codeBlock", "blockquote", "rule", "panel", "table", "tableRow", "tableHeader", "tableCell",
    "mention", "emoji", "inlineCard", "blockCard", "embedCard", "media", "mediaSingle", "mediaGroup",
    "mediaInline", "status", "date", "expand", "nestedExpand", "taskList", "taskItem", "decisionList",
    "decisionItem", "placeholder", "extension", "bodiedExtension", "inlineExtension", "layoutSection",
    "layoutColumn", "caption", "mystery", None, 5,
]  # fmt: skip
_JUNK: list[Any] = [None, 0, -1, 1.5, True, "", "x", "*_[`#", "😀", [], {}, "DONE", "https://e.com/(x"]


def _random_value(r: random.Random, depth: int) -> Any:
    roll = r.random()
    if depth > 6 or roll < 0.15:
        return r.choice([*_JUNK, "some *text*", "# hash", "1. one"])
    if roll < 0.25:
        return [_random_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    n: dict[str, Any] = {}
    if r.random() < 0.9:
        n["type"] = r.choice(_TYPES)
    if r.random() < 0.6:
        n["content"] = [_random_value(r, depth + 1) for _ in range(r.randint(0, 4))]
    elif r.random() < 0.3:
        n["content"] = _random_value(r, depth + 1)
    if r.random() < 0.5:
        n["text"] = r.choice([*_JUNK, "plain words", "a|b\nc"])
    if r.random() < 0.5:
        keys = ["level", "order", "language", "panelType", "text", "url", "id", "timestamp", "state",
                "colspan", "rowspan", "title", "shortName", "alt", "type", "data"]  # fmt: skip
        n["attrs"] = (
            {k: r.choice(_JUNK) for k in r.sample(keys, r.randint(0, 5))} if r.random() < 0.9 else "bad"
        )
    if r.random() < 0.3:
        marks = ["strong", "em", "code", "strike", "link", "subsup", "underline", "textColor", None, 3]
        n["marks"] = [
            {"type": m, "attrs": {"href": r.choice(_JUNK), "type": r.choice(["sub", "sup", 1])}}
            if r.random() < 0.8 else m
            for m in r.sample(marks, r.randint(0, 4))
        ]  # fmt: skip
    return n


def test_random_nested_garbage_never_raises() -> None:
    r = random.Random(20240601)
    for _ in range(1500):
        value = _random_value(r, 0)
        out = adf._to_markdown(value)  # no last-resort guard: the renderer itself must cope
        assert_clean(out)
        assert_no_repr(out)
        assert isinstance(adf_plain_text(value), str)
        assert isinstance(looks_like_raw_adf(out), bool)
        if isinstance(value, dict) and ("type" in value or "content" in value):
            # a JSON string of a node renders like the node itself
            as_json = json.dumps(value, default=str)
            assert adf._to_markdown(as_json) == adf._to_markdown(json.loads(as_json))


def _commonmark() -> Any:
    from markdown_it import MarkdownIt  # installed with Dagster (rich); a real CommonMark parser

    return MarkdownIt("commonmark").enable("strikethrough").enable("table")


_ALPHABET = [*"ab  *_~`[]()!<>&#\\-+.:|é😀{}\"'", "foo", "1. ", "# ", "&amp;", "http://x.y", "\n", "  "]
_HREFS = ["http://a.b/c", "http://a.b/(x)", "http://q.r/s_t"]
_HTML_MARKS = {"strong": "strong", "em": "em", "del": "strike", "sub": "sub", "sup": "sup"}


def _random_inline(r: random.Random) -> list[Node]:
    nodes: list[Node] = []
    for _ in range(r.randint(1, 7)):
        if r.random() < 0.1:
            nodes.append({"type": "hardBreak"})
            continue
        names = [m for m in ("strong", "em", "strike", "code", "link", "sub", "sup") if r.random() < 0.3]
        if "sub" in names and "sup" in names:
            names.remove("sup")
        marks = [mk("link", r.choice(_HREFS)) if m == "link" else mk(m) for m in names]
        text = "".join(r.choice(_ALPHABET) for _ in range(r.randint(1, 6)))
        nodes.append(t(text, *marks))
    return nodes


def _expected_marks(nodes: list[Node]) -> list[tuple[str, frozenset[tuple[str, str]]]]:
    out = []
    for n in nodes:
        if n["type"] != "text":
            continue
        keys = set()
        for m in n.get("marks", []):
            if m["type"] == "link":
                keys.add(("link", m["attrs"]["href"]))
            elif m["type"] == "subsup":
                keys.add((m["attrs"]["type"], ""))
            else:
                keys.add((m["type"], ""))
        out.extend((ch, frozenset(keys)) for ch in n["text"] if not ch.isspace())
    return out


def _parsed_marks(parser: Any, markdown: str) -> list[tuple[str, frozenset[tuple[str, str]]]]:
    import html

    from markdown_it.common.normalize_url import normalizeLink

    out = []
    for block in parser.parse(markdown):
        if block.type != "inline":
            continue
        stack: list[tuple[str, str]] = []
        for tok in block.children:
            kind = tok.type
            if kind == "link_open":
                stack.append(("link", tok.attrs["href"]))
            elif kind in ("strong_open", "em_open", "s_open"):
                stack.append(({"s_open": "strike"}.get(kind, kind[:-5]), ""))
            elif kind.endswith("_close"):
                stack.pop()
            elif kind == "html_inline":
                tag = tok.content.strip("</>")
                if tok.content.startswith("</"):
                    stack.pop()
                elif tag.startswith("a href="):
                    stack.append(("link", html.unescape(tag.split('"')[1])))
                else:
                    stack.append((_HTML_MARKS[tag], ""))
            elif kind in ("text", "code_inline"):
                keys = {(k, normalizeLink(v) if k == "link" else v) for k, v in stack}
                if kind == "code_inline":
                    keys.add(("code", ""))
                out.extend((ch, frozenset(keys)) for ch in tok.content if not ch.isspace())
            else:
                assert kind in ("softbreak", "hardbreak"), f"unexpected {kind} in {markdown!r}"
    return out


def _link_runs_have_text(nodes: list[Node]) -> bool:
    """A link whose whole text is blank renders its URL as label (by design): skip those samples."""
    runs: list[str] = []
    current = None
    for n in nodes:
        href = next((m["attrs"]["href"] for m in n.get("marks", []) if m["type"] == "link"), None)
        if href is not None and href != current:
            runs.append("")
        current = href
        if href is not None:
            runs[-1] += n.get("text", "")
    return all(run.strip() for run in runs)


def test_marks_survive_a_commonmark_round_trip() -> None:
    from markdown_it.common.normalize_url import normalizeLink

    parser = _commonmark()
    r = random.Random(7)
    checked = 0
    for _ in range(1500):
        nodes = _random_inline(r)
        if not _link_runs_have_text(nodes):
            continue
        out = md(doc({"type": "paragraph", "content": nodes}))
        expected = [
            (ch, frozenset((k, normalizeLink(v)) if k == "link" else (k, v) for k, v in keys))
            for ch, keys in _expected_marks(nodes)
        ]
        assert _parsed_marks(parser, out) == expected, f"{nodes!r}\n->\n{out}"
        checked += 1
    assert checked > 1000


_WORDS = [
    "alpha", "# h", "1. x", "- y", "> q", "* z", "+ w", "---", "===", "<div>", "a|b", "x_y", "_u_",
    "**s**", "`c`", "[l](u)", "![i](u)", "3) k", "    indented", "&amp;", "\\", "~~~", "```", "中文",
]  # fmt: skip


def _random_block(r: random.Random, depth: int) -> Node:
    def inline() -> list[Node]:
        out: list[Node] = []
        for _ in range(r.randint(1, 3)):
            if r.random() < 0.15:
                out.append({"type": "hardBreak"})
            words = " ".join(r.choice(_WORDS) for _ in range(r.randint(1, 4))) + " end"
            out.append(t(words, *[m for m in ("strong", "em") if r.random() < 0.2]))
        return out

    kind = r.choice(["p", "p", "p", "h", "ul", "ol", "bq", "code", "table"] if depth < 4 else ["p"])
    if kind == "p":
        return p(*inline())
    if kind == "h":
        return node("heading", inline(), level=r.randint(1, 6))
    if kind in ("ul", "ol"):
        items = [
            li(p(*inline()), *[_random_block(r, depth + 1) for _ in range(r.randint(0, 2))]) for _ in range(3)
        ]
        return ul(*items) if kind == "ul" else ol(*items, order=r.choice([1, 3, 0, 10]))
    if kind == "bq":
        return node("blockquote", [_random_block(r, depth + 1) for _ in range(r.randint(1, 2))])
    if kind == "code":
        return code("x = 1\n```\n  - y\n\n\n# z", "py")
    header = r.random() < 0.5
    return table(*[row(*[cell(p(*inline()), header=header and i == 0) for _ in range(2)]) for i in range(2)])


def _adf_skeleton(nodes: list[Node], out: list[str]) -> list[str]:
    for n in nodes:
        kind = n["type"]
        if kind == "paragraph":
            out += ["p", "/p"]
        elif kind == "heading":
            out += [f"h{n['attrs']['level']}", "/h"]
        elif kind in ("bulletList", "orderedList"):
            out.append("ul" if kind == "bulletList" else "ol")
            for item in n["content"]:
                out.append("li")
                _adf_skeleton(item["content"], out)
                out.append("/li")
            out.append("/list")
        elif kind == "blockquote":
            out.append("bq")
            _adf_skeleton(n["content"], out)
            out.append("/bq")
        elif kind in ("codeBlock", "table"):
            out.append(kind)
    return out


def _md_skeleton_and_text(parser: Any, markdown: str) -> tuple[list[str], str]:
    names = {
        "paragraph_open": "p", "paragraph_close": "/p", "heading_close": "/h", "bullet_list_open": "ul",
        "ordered_list_open": "ol", "bullet_list_close": "/list", "ordered_list_close": "/list",
        "list_item_open": "li", "list_item_close": "/li", "blockquote_open": "bq", "blockquote_close": "/bq",
        "fence": "codeBlock", "table_open": "table",
    }  # fmt: skip
    out: list[str] = []
    text: list[str] = []
    in_table = False
    for tok in parser.parse(markdown):
        if tok.type == "inline":
            text.extend(c.content for c in tok.children if c.type in ("text", "code_inline"))
        elif tok.type == "fence":
            text.append(tok.content)
        if in_table:
            in_table = tok.type != "table_close"
            continue
        if tok.type == "heading_open":
            out.append(tok.tag)
        elif tok.type in names:
            out.append(names[tok.type])
            in_table = tok.type == "table_open"
        else:
            assert tok.type in ("inline", "hr"), f"unexpected {tok.type} in:\n{markdown}"
    return out, "".join(ch for ch in "".join(text) if not ch.isspace())


def test_block_structure_and_text_survive_a_commonmark_round_trip() -> None:
    parser = _commonmark()
    r = random.Random(11)
    for _ in range(400):
        value = doc(*[_random_block(r, 0) for _ in range(r.randint(1, 4))])
        out = md(value)
        skeleton, text = _md_skeleton_and_text(parser, out)
        assert skeleton == _adf_skeleton(value["content"], []), out
        assert text == "".join(ch for ch in adf_plain_text(value) if not ch.isspace()), out


@pytest.mark.parametrize(
    "builder",
    [
        lambda: doc(ul("a"), ul("b")),
        lambda: doc(ol("a"), ol("b", order=2)),
        lambda: doc(ul(li(p("x"), ol("y")))),
    ],
)
def test_list_shapes_parse_as_intended(builder: Callable[[], Node]) -> None:
    value = builder()
    skeleton, _ = _md_skeleton_and_text(_commonmark(), md(value))
    assert skeleton == _adf_skeleton(value["content"], [])
