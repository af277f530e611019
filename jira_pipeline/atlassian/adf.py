"""Atlassian Document Format (ADF) -> clean Markdown for the AINexLayer indexer.

Jira Cloud REST v3 returns rich-text fields (description, comment bodies, worklog comments, textarea
custom fields) as ADF JSON trees. The indexer wants readable CommonMark/GFM, so this module renders
ADF with a few guarantees that callers rely on:

* It never raises and never leaks a Python/JSON repr of a node: a field can hold anything from a
  well-formed document to legacy wiki text, a JSON *string* of ADF, ``None`` or junk, and one odd
  issue must not fail a sync. Unknown node types degrade to their text content.
* Output is deterministic and tidy: blocks separated by exactly one blank line, no trailing
  whitespace (the chosen hard-break form is a trailing backslash, which survives whitespace
  trimming, unlike two trailing spaces), stripped ends. Fenced code is kept verbatim apart from
  trailing whitespace, so code blocks are the one place two blank lines in a row may appear.
* Literal text stays literal: Markdown-significant characters are escaped only where they would
  otherwise take effect (``snake_case`` stays as it is, ``2*3`` does not). Emphasis delimiters
  that CommonMark would not recognise at a given position (e.g. ``a**(b)**c``) fall back to the
  equivalent inline HTML (``<strong>``), so what is bold in Jira stays bold.
* Deep or cyclic input cannot blow the stack: structural rendering stops at ``_MAX_DEPTH`` and the
  rest of that subtree is rendered as plain text by an iterative walker, so no text is lost.
"""

from __future__ import annotations

import ast
import json
import re
import string
import unicodedata
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from html import escape as html_escape
from typing import Any
from urllib.parse import quote

__all__ = ["adf_plain_text", "adf_to_markdown", "looks_like_raw_adf"]

# Structural nesting (blocks inside blocks, wrappers inside inline content) beyond which a subtree
# is flattened to plain text. Real documents rarely exceed ~8; the cap exists for hostile/broken
# input and keeps Python recursion far below the interpreter limit even when called deep in Dagster.
_MAX_DEPTH = 40
# ast.literal_eval is only attempted on Python-repr-looking strings up to this size; beyond it the
# regex salvage is cheaper and just as useful.
_MAX_LITERAL_EVAL = 2_000_000
_MAX_COLSPAN = 64
_MAX_ORDER = 999_999_999  # CommonMark caps ordered-list start numbers at 9 digits

_BLOCK_TYPES = frozenset(
    {
        "doc", "paragraph", "heading", "bulletList", "orderedList", "listItem", "codeBlock",
        "blockquote", "rule", "panel", "table", "tableRow", "tableHeader", "tableCell",
        "mediaSingle", "mediaGroup", "media", "blockCard", "embedCard", "expand", "nestedExpand",
        "taskList", "taskItem", "decisionList", "decisionItem", "extension", "bodiedExtension",
        "layoutSection", "layoutColumn", "caption", "multiBodiedExtension", "extensionFrame",
    }
)  # fmt: skip
_INLINE_TYPES = frozenset(
    {
        "text", "hardBreak", "mention", "emoji", "inlineCard", "status", "date", "placeholder",
        "inlineExtension", "mediaInline",
    }
)  # fmt: skip
_LIST_KINDS = {
    "bulletList": "bullet",
    "orderedList": "ordered",
    "taskList": "task",
    "decisionList": "decision",
}
_ITEM_TYPES = frozenset({"listItem", "taskItem", "decisionItem"})
_PANEL_LABELS = {
    "info": "Info", "note": "Note", "warning": "Warning", "success": "Success", "error": "Error",
    "tip": "Tip", "custom": "Note",
}  # fmt: skip

_ASCII_PUNCT = frozenset(string.punctuation)
_ESC_RE = re.compile(r"[\\`*_~\[\]<&{]")
_ENTITY_RE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_BREAK_RE = re.compile(r"[\x00\n]")
_SPACES_RE = re.compile(r" {2,}")
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]")
_AUTOLINK_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>\x00-\x1f\x7f]*")
# Line starts that CommonMark would read as block structure: ATX heading, blockquote, bullet,
# ordered-list marker (escape goes before the "." / ")"), setext underline / thematic break.
_LINE_HEAD_RE = re.compile(r"#{1,6}(?=[ \t]|$)|>|[-+*](?=[ \t]|$)|=+$|-+$")
_LINE_ORDERED_RE = re.compile(r"(\d{1,9})([.)])(?=[ \t]|$)")
# A nested list may follow its parent item's paragraph without a blank line only if its first line
# can interrupt a paragraph (CommonMark: non-empty item; ordered lists must start at 1).
_CAN_INTERRUPT_RE = re.compile(r"(?:[-*]|1[.)]) \S")
_HEADING_TAIL_RE = re.compile(r"(^|\s)(#+)$")

_RAW_START_RE = re.compile(r"""\[?\s*\{\s*["'](?:type|version|content|attrs|marks|text)["']\s*:""")
# Our own escaping turns '{"' into '\\{"' and '[' into '\\[' in prose, so converted Markdown can
# never match these two patterns outside code (which looks_like_raw_adf ignores).
_RAW_ANY_RE = re.compile(r"""(?<!\\)\{\s*["']type["']\s*:\s*["'][A-Za-z]+["']|["']content["']\s*:\s*\[""")
_BRACE_QUOTE_RE = re.compile(r"""\s*["']""")
_FENCED_CODE_RE = re.compile(r"(?ms)^[ \t>]*(`{3,}|~{3,}).*?(?:^[ \t>]*\1[`~]*[ \t]*$|\Z)")
_INLINE_CODE_RE = re.compile(r"(`+).+?\1")
# The closing quote is optional so that the last text of a truncated document is kept too.
_TEXT_VALUE_RE = re.compile(r"""["']text["']\s*:\s*(?:"((?:[^"\\]|\\.)*)"?|'((?:[^'\\]|\\.)*)'?)""")

# Emphasis-like marks whose delimiters obey CommonMark flanking rules, their Markdown delimiter and
# the inline-HTML fallback used where the delimiter would not be recognised.
_FLANK_DELIMS = {"strong": "**", "em": "*", "strike": "~~"}
_HTML_TAGS = {"strong": "strong", "em": "em", "strike": "del", "sub": "sub", "sup": "sup"}
# Outer marks first: a link wraps emphasis, emphasis wraps strike, and so on. Code is not in here:
# it is always innermost and rendered per text run.
_MARK_RANK = {"link": 0, "strong": 1, "em": 2, "strike": 3, "sub": 4, "sup": 4}

_NO_MARKS: frozenset[tuple[str, ...]] = frozenset()
_BR_ITEM: tuple[str, str, frozenset[tuple[str, ...]]] = ("br", "", _NO_MARKS)
_SOFT_ITEM: tuple[str, str, frozenset[tuple[str, ...]]] = ("text", "\n", _NO_MARKS)

Block = tuple[str, list[str]]  # (kind, lines); kinds: para, heading, code, ul-, ul*, ol., ol), table...
Item = tuple[str, str, frozenset[tuple[str, ...]]]  # (kind, payload, marks); kind: text/code/atom/br
Tok = tuple[Any, ...]


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def adf_to_markdown(doc: Any) -> str:
    """Render an ADF document (dict, list of nodes, JSON string of either) as Markdown.

    Plain strings that are not ADF (legacy wiki markup, plain-text fields) are returned stripped but
    otherwise untouched: re-escaping them would corrupt text that was never ADF in the first place.
    """
    try:
        return _to_markdown(doc)
    except Exception:  # last-resort guard: one odd field must never fail a sync
        try:
            return _normalize_plain(_plain_text(_coerce(doc)))
        except Exception:
            return ""


def adf_plain_text(doc: Any) -> str:
    """Visible text of an ADF document, without Markdown syntax (search snippets, checks).

    Blocks are separated by a blank line, hard breaks become newlines, a table row is one line of
    tab-separated cells; mentions, emoji, status, dates, cards and attachment names contribute the
    text a reader sees. Accepts the same inputs as ``adf_to_markdown`` and never raises either.
    """
    try:
        value = _coerce(doc)
        if value is None:
            return ""
        if isinstance(value, str):
            return value.strip()
        return _normalize_plain(_plain_text(value))
    except Exception:
        return ""


def looks_like_raw_adf(text: str | None) -> bool:
    """True if ``text`` looks like unconverted ADF (JSON or a Python repr of it).

    Used by an asset check to catch a Markdown column that accidentally received the raw document.
    Code spans and fenced code are ignored, so a description that *documents* ADF in a code block is
    not a false positive; our own Markdown escapes ``[`` in prose, so ``"content": [`` cannot arise
    from converted text either.
    """
    if not isinstance(text, str) or not text:
        return False
    if _RAW_START_RE.match(text.lstrip()):
        return True
    if "type" not in text and "content" not in text:
        return False
    body = _INLINE_CODE_RE.sub("", _FENCED_CODE_RE.sub("", text))
    return bool(_RAW_ANY_RE.search(body))


# --------------------------------------------------------------------------------------------------
# Input coercion
# --------------------------------------------------------------------------------------------------


def _to_markdown(doc: Any) -> str:
    value = _coerce(doc)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    renderer = _Renderer()
    lines = _join_blocks(renderer.blocks(value, 0))
    return "\n".join(line.rstrip() for line in lines).strip()


def _coerce(value: Any, level: int = 0) -> Any:
    """Turn a field value into ADF nodes, a plain string to pass through, or None.

    Jira data reaches us as dicts, but stored/replayed rows and v2-era fields carry JSON strings,
    double-encoded JSON or Python reprs of ADF; those are parsed so they never surface raw.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, Mapping | list | tuple):
        return value
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    head = text[0]
    if head in "{[\"'" and level < 3:
        parsed = _parse_structured(text)
        if isinstance(parsed, str):
            inner = _coerce(parsed, level + 1)  # double-encoded JSON string
            if inner is not None and not isinstance(inner, str):
                return inner
        elif _is_adf_like(parsed):
            return parsed
    if _RAW_START_RE.match(text):
        return _salvage_text(text)  # truncated/unparseable ADF: keep the words, never the syntax
    return value


def _parse_structured(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    if len(text) <= _MAX_LITERAL_EVAL and ("'type'" in text or "'content'" in text or text[0] in "\"'"):
        try:
            return ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return None
    return None


def _is_adf_like(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "type" in value or "content" in value
    if isinstance(value, list):
        return any(isinstance(v, Mapping) and ("type" in v or "text" in v) for v in value)
    return False


def _salvage_text(text: str) -> dict[str, Any]:
    parts: list[str] = []
    for m in _TEXT_VALUE_RE.finditer(text):
        if m.group(1) is not None:
            try:
                parts.append(json.loads(f'"{m.group(1)}"'))
            except ValueError:
                parts.append(m.group(1))
        else:
            try:
                parts.append(str(ast.literal_eval(f"'{m.group(2)}'")))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                parts.append(m.group(2))
    joined = " ".join(p.strip() for p in parts if p.strip())
    return {"type": "doc", "content": [{"type": "paragraph", "content": [{"type": "text", "text": joined}]}]}


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _type(node: Mapping[str, Any]) -> str:
    t = node.get("type")
    return t if isinstance(t, str) else ""


def _attrs(node: Mapping[str, Any]) -> Mapping[str, Any]:
    a = node.get("attrs")
    return a if isinstance(a, Mapping) else {}


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _clean(text: str) -> str:
    # NUL is our hard-break sentinel, so it must never come from data; CR/CRLF become LF.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x00", "") if "\x00" in text else text


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e15:
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return default


def _iter_nodes(value: Any) -> Iterator[Any]:
    """Children of a ``content`` value, tolerating a single node, nested lists and list cycles."""
    if value is None:
        return
    if not isinstance(value, list | tuple):
        yield value
        return
    seen = {id(value)}
    stack: list[Iterator[Any]] = [iter(value)]
    while stack:
        for child in stack[-1]:
            if isinstance(child, list | tuple):
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append(iter(child))
                    break
                continue
            if child is not None:
                yield child
        else:
            stack.pop()


def _is_inline(node: Any) -> bool:
    if isinstance(node, str):
        return True
    if isinstance(node, int | float) and not isinstance(node, bool):
        return True
    if not isinstance(node, Mapping):
        return False
    t = _type(node)
    if t in _INLINE_TYPES:
        return True
    if t in _BLOCK_TYPES:
        return False
    # Unknown node: a leaf (text or nothing) flows inline; a wrapper with content is a block.
    return not isinstance(node.get("content"), list | tuple | Mapping)


def _is_ws(c: str) -> bool:
    return c == "" or c == "\x00" or c.isspace()


def _punct_strict(c: str) -> bool:
    return c in _ASCII_PUNCT or unicodedata.category(c).startswith("P")


def _punct_wide(c: str) -> bool:
    return c in _ASCII_PUNCT or unicodedata.category(c)[0] in "PS"


def _left_flanking(prev: str, nxt: str, sure: bool) -> bool:
    # Unicode symbols count as punctuation in newer CommonMark only. ``sure`` picks the reading
    # under which the run is least likely flanking, so "surely flanking" holds in every revision;
    # ``sure=False`` gives "possibly flanking". Doubt always resolves to the HTML fallback.
    inner = _punct_wide if sure else _punct_strict
    outer = _punct_strict if sure else _punct_wide
    return not _is_ws(nxt) and (not inner(nxt) or _is_ws(prev) or outer(prev))


def _right_flanking(prev: str, nxt: str, sure: bool) -> bool:
    inner = _punct_wide if sure else _punct_strict
    outer = _punct_strict if sure else _punct_wide
    return not _is_ws(prev) and (not inner(prev) or _is_ws(nxt) or outer(nxt))


def _escape(core: str, in_label: bool = False) -> str:
    """Escape literal text so it renders as itself; ``core`` has no surrounding whitespace.

    Decisions look at neighbours inside ``core`` only; the ends count as unknown (escaped), because
    a delimiter or another node may follow there.
    """
    if not _ESC_RE.search(core):
        return core
    n = len(core)

    def repl(m: re.Match[str]) -> str:
        c = m.group()
        i = m.start()
        prev = core[i - 1] if i else ""
        nxt = core[i + 1] if i + 1 < n else ""
        if c == "\\":
            return c if nxt.isalnum() else "\\\\"
        if c in "*~":
            # A delimiter surrounded by whitespace can neither open nor close ("2 * 3").
            return c if (prev.isspace() and nxt.isspace()) else "\\" + c
        if c == "_":
            # Intraword underscores never emphasise in CommonMark ("snake_case").
            both_alnum = prev.isalnum() and nxt.isalnum()
            return c if (both_alnum or (prev.isspace() and nxt.isspace())) else "\\_"
        if c == "[":
            return "\\["
        if c == "]":
            return "\\]" if in_label else c
        if c == "<":
            return "\\<" if (not nxt or nxt.isalpha() or nxt in "/!?") else c
        if c == "&":
            return "\\&" if _ENTITY_RE.match(core, i) else c
        if c == "{":
            # Not Markdown syntax; escaped before a quote only so that JSON pasted into prose
            # cannot make looks_like_raw_adf() flag correctly converted output.
            return "\\{" if _BRACE_QUOTE_RE.match(core, i + 1) else c
        return "\\" + c  # backtick

    return _ESC_RE.sub(repl, core)


def _escape_line_start(line: str) -> str:
    m = _LINE_ORDERED_RE.match(line)
    if m:
        return f"{m.group(1)}\\{line[m.end(1) :]}"
    if _LINE_HEAD_RE.match(line):
        return "\\" + line
    return line


def _code_span(text: str) -> str:
    text = text.replace("\n", " ")
    longest = max((len(r) for r in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = ""
    if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ") and text.strip()):
        pad = " "
    return f"{fence}{pad}{text}{pad}{fence}"


def _dest(url: str) -> str:
    """A link destination CommonMark parses back to ``url`` (spaces, <>, unbalanced parens)."""
    url = _CTRL_RE.sub("", url).strip()
    if not url:
        return "<>"
    url = url.replace("\\", "\\\\").replace(" ", "%20").replace("<", "%3C").replace(">", "%3E")
    depth = 0
    for ch in url:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                break
    if depth != 0:
        url = url.replace("(", "\\(").replace(")", "\\)")
    return url


def _link_close(href: str, title: str) -> str:
    if not title:
        return f"]({_dest(href)})"
    title = _CTRL_RE.sub(" ", title).replace("\\", "\\\\").replace('"', '\\"')
    return f']({_dest(href)} "{title}")'


def _link_md(label: str, url: str) -> str:
    """Markdown for a card/link atom: autolink when the label is the URL itself."""
    url = url.strip()
    if (not label or label == url) and _AUTOLINK_RE.fullmatch(url):
        return f"<{url}>"
    text = _escape(" ".join((label or url).split()), in_label=True)
    return f"[{text}]({_dest(url)})"


def _date_iso(value: Any) -> str:
    try:
        ms = float(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else None
        if ms is None:
            return ""
        return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()
    except (ValueError, OverflowError, OSError):
        return _str(value).strip()


def _media_name(attrs: Mapping[str, Any]) -> str:
    for key in ("alt", "__fileName", "fileName", "filename", "name"):
        v = attrs.get(key)
        if isinstance(v, str) and v.strip():
            return " ".join(v.split())
    return ""


def _media_md(attrs: Mapping[str, Any]) -> str:
    """Placeholder for an attachment/image: we cannot inline the binary, but must not drop it."""
    name = _media_name(attrs)
    url = attrs.get("url")
    if attrs.get("type") == "external" and isinstance(url, str) and url.strip():
        return f"![{_escape(name, True)}]({_dest(url)})"
    mid = _str(attrs.get("id")).strip()
    if mid:
        return f"![{_escape(name or 'attachment', True)}](attachment:{quote(mid, safe='-_.~')})"
    if name:
        return f"[attachment: {_escape(name, True)}]"
    return "[attachment]"


def _mention_text(attrs: Mapping[str, Any]) -> str:
    name = _str(attrs.get("text")).strip() or _str(attrs.get("displayName")).strip()
    if not name:
        name = _str(attrs.get("id")).strip() or "unknown"
    return name if name.startswith("@") else "@" + name


def _emoji_text(attrs: Mapping[str, Any]) -> str:
    for key in ("text", "shortName", "id"):
        v = _str(attrs.get(key)).strip()
        if v:
            return v
    return ""


def _card_parts(attrs: Mapping[str, Any]) -> tuple[str, str]:
    """(label, url) of an inline/block/embed card; smart-link data may carry a name."""
    url = _str(attrs.get("url")).strip()
    label = ""
    data = attrs.get("data")
    if isinstance(data, Mapping):
        url = url or _str(data.get("url")).strip()
        label = _str(data.get("name")).strip()
    return label, url


def _mark_key(mark: Any) -> tuple[str, ...] | None:
    if isinstance(mark, str):
        t, attrs = mark, {}
    elif isinstance(mark, Mapping):
        t, attrs = _type(mark), _attrs(mark)
    else:
        return None
    if t in ("strong", "em", "strike", "code"):
        return (t,)
    if t == "link":
        href = attrs.get("href")
        if isinstance(href, str) and href.strip():
            return ("link", href.strip(), " ".join(_str(attrs.get("title")).split()))
        return None
    if t == "subsup" and attrs.get("type") in ("sub", "sup"):
        return (attrs["type"],)
    # underline, textColor, backgroundColor, annotation, border, unknown: presentation only.
    return None


def _marks(value: Any) -> frozenset[tuple[str, ...]]:
    if not isinstance(value, list | tuple):
        return _NO_MARKS
    keys = [k for k in (_mark_key(m) for m in value) if k is not None]
    if not keys:
        return _NO_MARKS
    links = [k for k in keys if k[0] == "link"]
    if len(links) > 1:  # Markdown links cannot nest; keep the first
        keys = [k for k in keys if k[0] != "link"] + links[:1]
    return frozenset(keys)


def _join_blocks(blocks: list[Block]) -> list[str]:
    lines: list[str] = []
    for _, block_lines in blocks:
        if not block_lines:
            continue
        if lines:
            lines.append("")
        lines.extend(block_lines)
    return lines


def _hang(marker: str, body: list[str]) -> list[str]:
    if not body:
        return [marker]
    pad = " " * (len(marker) + 1)
    out = [f"{marker} {body[0]}" if body[0] else marker]
    out.extend(pad + line if line else "" for line in body[1:])
    return out


def _quote(lines: list[str]) -> list[str]:
    return [f"> {line}" if line else ">" for line in lines]


# --------------------------------------------------------------------------------------------------
# Markdown renderer
# --------------------------------------------------------------------------------------------------


class _Renderer:
    """Recursive ADF renderer; ``_path`` holds ids of nodes being rendered (cycle guard)."""

    __slots__ = ("_in_cell", "_pair", "_path", "_visible_links")

    def __init__(self) -> None:
        self._path: set[int] = set()
        self._in_cell = False
        self._pair = 0
        self._visible_links: set[tuple[str, ...]] = set()

    # ---- blocks -----------------------------------------------------------------------------

    def blocks(self, nodes: Any, depth: int) -> list[Block]:
        out: list[Block] = []
        pending: list[Any] = []
        for node in _iter_nodes(nodes):
            if _is_inline(node):
                pending.append(node)
                continue
            if pending:
                out.extend(self._para(pending, depth))
                pending = []
            out.extend(self.block(node, depth + 1, out[-1][0] if out else ""))
        if pending:
            out.extend(self._para(pending, depth))
        return out

    def block(self, node: Any, depth: int, prev_kind: str) -> list[Block]:
        if not isinstance(node, Mapping):
            return self._para([node], depth)
        if depth > _MAX_DEPTH:
            return self._plain_para(node)
        nid = id(node)
        if nid in self._path:
            return []
        self._path.add(nid)
        try:
            return self._dispatch(node, depth, prev_kind)
        finally:
            self._path.discard(nid)

    def _dispatch(self, node: Mapping[str, Any], depth: int, prev_kind: str) -> list[Block]:
        t = _type(node)
        attrs = _attrs(node)
        content = node.get("content")
        if t == "paragraph":
            return self._para(content, depth)
        if t == "heading":
            return self._heading(node, depth)
        if t in _LIST_KINDS:
            return [self._list(node, depth, _LIST_KINDS[t], prev_kind)]
        if t in _ITEM_TYPES:  # an item outside a list: render it as a one-item list
            kind = {"listItem": "bullet", "taskItem": "task", "decisionItem": "decision"}[t]
            self._path.discard(id(node))  # _item re-enters it (and guards it) itself
            return [self._list({"content": [node]}, depth, kind, prev_kind)]
        if t == "codeBlock":
            return self._code(node)
        if t == "blockquote":
            return [("quote", _quote(_join_blocks(self.blocks(content, depth))))]
        if t == "rule":
            return [("rule", ["---"])]
        if t == "panel":
            return self._panel(node, depth)
        if t == "table":
            return self._table(content, depth)
        if t == "tableRow":
            return self._table([node], depth)
        if t == "mediaSingle":
            return self._media_single(content, depth)
        if t == "mediaGroup":
            lines = [_media_md(_attrs(c)) for c in _iter_nodes(content) if isinstance(c, Mapping)]
            return [("para", lines)] if lines else []
        if t == "media":
            return [("para", [self._media_with_link(node)])]
        if t in ("blockCard", "embedCard"):
            label, url = _card_parts(attrs)
            return [("para", [_link_md(label, url)])] if url else self._para_text(label)
        if t in ("expand", "nestedExpand"):
            title = " ".join(_str(attrs.get("title")).split())
            head = self._para([{"type": "text", "text": title, "marks": [{"type": "strong"}]}], depth)
            return head + self.blocks(content, depth)
        if t in ("extension", "bodiedExtension", "multiBodiedExtension", "extensionFrame"):
            return self._para_text(_str(attrs.get("text"))) + self.blocks(content, depth)
        if t == "caption":
            return self._para(content, depth)
        if t in ("doc", "layoutSection", "layoutColumn", "tableCell", "tableHeader"):
            return self.blocks(content, depth)
        # Unknown block-level wrapper: its children, in order (their inline runs become paragraphs).
        own = _str(node.get("text")) or (_str(attrs.get("text")) if content is None else "")
        return self._para_text(own) + self.blocks(content, depth)

    def _plain_para(self, node: Any) -> list[Block]:
        return self._para_text(_plain_text(node))

    def _para_text(self, text: str) -> list[Block]:
        return self._para([text], 0) if text.strip() else []

    def _para(self, inline_nodes: Any, depth: int) -> list[Block]:
        lines = self._lines(self.inline(inline_nodes, depth))
        return [("para", lines)] if lines else []

    def _lines(self, rendered: str) -> list[str]:
        """Split inline output at hard (NUL) and soft (LF) breaks into clean paragraph lines."""
        lines: list[str] = []
        hard: list[bool] = []
        pos = 0
        for m in _BREAK_RE.finditer(rendered):
            chunk = rendered[pos : m.start()].strip()
            if chunk:
                lines.append(chunk)
                hard.append(False)
            if m.group() == "\x00" and hard:
                hard[-1] = True
            pos = m.end()
        chunk = rendered[pos:].strip()
        if chunk:
            lines.append(chunk)
            hard.append(False)
        if not lines:
            return []
        hard[-1] = False  # a hard break at the end of a paragraph is meaningless
        out = [_escape_line_start(line) for line in lines]
        if not self._in_cell:
            out = [line + "\\" if h else line for line, h in zip(out, hard, strict=True)]
        return out

    def _heading(self, node: Mapping[str, Any], depth: int) -> list[Block]:
        level = min(max(_int(_attrs(node).get("level"), 1), 1), 6)
        text = " ".join(_BREAK_RE.sub(" ", self.inline(node.get("content"), depth)).split())
        if not text:
            return []
        text = _HEADING_TAIL_RE.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
        return [("heading", ["#" * level + " " + text])]

    def _code(self, node: Mapping[str, Any]) -> list[Block]:
        parts: list[str] = []
        for child in _iter_nodes(node.get("content")):
            if isinstance(child, Mapping) and _type(child) == "hardBreak":
                parts.append("\n")
            elif isinstance(child, Mapping) and _type(child) == "text":
                parts.append(_clean(_str(child.get("text"))))
            else:
                parts.append(_plain_text(child))
        text = "".join(parts)
        lines = [line.rstrip() for line in text.split("\n")]
        while lines and not lines[0]:
            lines.pop(0)
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            return []
        if self._in_cell:
            return [("code", [_code_span(line) for line in lines if line])]
        longest = max((len(r) for r in re.findall(r"`{3,}", text)), default=0)
        fence = "`" * max(3, longest + 1)
        lang = _str(_attrs(node).get("language")).replace("`", "").split()
        return [("code", [fence + (lang[0] if lang else ""), *lines, fence])]

    def _panel(self, node: Mapping[str, Any], depth: int) -> list[Block]:
        ptype = _str(_attrs(node).get("panelType")).strip().lower() or "info"
        label = _PANEL_LABELS.get(ptype) or _escape(ptype.capitalize())
        blocks = self.blocks(node.get("content"), depth)
        head = f"**{label}:**"
        if blocks and blocks[0][0] == "para":
            first = blocks[0][1]
            blocks[0] = ("para", [f"{head} {first[0]}", *first[1:]])
        else:
            blocks.insert(0, ("para", [head]))
        return [("quote", _quote(_join_blocks(blocks)))]

    def _media_with_link(self, node: Mapping[str, Any]) -> str:
        md = _media_md(_attrs(node))
        link = next((k for k in _marks(node.get("marks")) if k[0] == "link"), None)
        return f"[{md}{_link_close(link[1], link[2])}" if link else md

    def _media_single(self, content: Any, depth: int) -> list[Block]:
        out: list[Block] = []
        for child in _iter_nodes(content):
            if isinstance(child, Mapping) and _type(child) == "media":
                out.append(("para", [self._media_with_link(child)]))
            else:
                out.extend(self.block(child, depth + 1, out[-1][0] if out else ""))
        return out or [("para", ["[attachment]"])]

    # ---- lists ------------------------------------------------------------------------------

    def _list(self, node: Mapping[str, Any], depth: int, kind: str, prev_kind: str) -> Block:
        # Adjacent lists of the same type would merge into one in Markdown; alternate the marker.
        if kind == "ordered":
            delim = ")" if prev_kind == "ol." else "."
            number = min(max(_int(_attrs(node).get("order"), 1), 0), _MAX_ORDER)
            block_kind = "ol" + delim
        else:
            bullet = "*" if prev_kind == "ul-" else "-"
            block_kind = "ul" + bullet
        groups: list[tuple[Any, list[Any]]] = []
        for child in _iter_nodes(node.get("content")):
            if groups and isinstance(child, Mapping) and _type(child) in _LIST_KINDS:
                groups[-1][1].append(child)  # a list directly inside a list nests under the last item
            else:
                groups.append((child, []))
        lines: list[str] = []
        for child, extra in groups:
            body = self._item(child, extra, depth + 1)
            if kind == "ordered":
                marker = f"{number}{delim}"
                number = min(number + 1, _MAX_ORDER)
            else:
                marker = bullet
            lines.extend(_hang(marker, body))
        return (block_kind, lines)

    def _item(self, child: Any, extra: list[Any], depth: int) -> list[str]:
        prefix = ""
        if isinstance(child, Mapping) and _type(child) in _ITEM_TYPES:
            t = _type(child)
            if t == "taskItem":
                prefix = "[x]" if _str(_attrs(child).get("state")).upper() == "DONE" else "[ ]"
            elif t == "decisionItem":
                prefix = "**Decision:**"
            nid = id(child)
            if nid in self._path or depth > _MAX_DEPTH:
                blocks = [] if nid in self._path else self._plain_para(child)
            else:
                self._path.add(nid)
                try:
                    blocks = self.blocks(child.get("content"), depth)
                finally:
                    self._path.discard(nid)
        else:
            blocks = self.blocks([child], depth)
        if prefix:
            # "[ ]" / "**Decision:**" join the item's first paragraph; before anything else (a code
            # fence, a table) they need their own line, or that block would stop being one.
            if blocks and blocks[0][0] == "para" and blocks[0][1]:
                first = blocks[0][1]
                blocks[0] = ("para", [f"{prefix} {first[0]}", *first[1:]])
            else:
                blocks.insert(0, ("para", [prefix]))
        for node in extra:
            blocks.extend(self.block(node, depth + 1, blocks[-1][0] if blocks else ""))
        body: list[str] = []
        prev = ""
        for kind, block_lines in blocks:
            if not block_lines:
                continue
            tight = prev == "para" and kind[:2] in ("ul", "ol") and _CAN_INTERRUPT_RE.match(block_lines[0])
            if body and not tight:
                body.append("")
            body.extend(block_lines)
            prev = kind
        return body

    # ---- tables -----------------------------------------------------------------------------

    def _table(self, content: Any, depth: int) -> list[Block]:
        rows: list[list[Any]] = []
        for child in _iter_nodes(content):
            t = _type(child) if isinstance(child, Mapping) else ""
            if t == "tableRow":
                rows.append(list(_iter_nodes(child.get("content"))))
            elif t in ("tableCell", "tableHeader") and rows:
                rows[-1].append(child)
            else:
                rows.append([child])
        grid: list[list[str]] = []
        header_first = False
        span_left: dict[int, int] = {}
        for r, cells in enumerate(rows):
            blocked = {c for c, n in span_left.items() if n > 0}
            out: list[str] = []
            new_spans: dict[int, int] = {}
            all_header = bool(cells)
            for cell in cells:
                while len(out) in blocked:
                    out.append("")
                attrs = _attrs(cell) if isinstance(cell, Mapping) else {}
                if not (isinstance(cell, Mapping) and _type(cell) == "tableHeader"):
                    all_header = False
                colspan = min(max(_int(attrs.get("colspan"), 1), 1), _MAX_COLSPAN)
                rowspan = max(_int(attrs.get("rowspan"), 1), 1)
                col = len(out)
                out.append(self._cell(cell, depth))
                out.extend([""] * (colspan - 1))
                if rowspan > 1:
                    for c in range(col, col + colspan):
                        new_spans[c] = rowspan - 1
            for c in sorted(blocked):
                if c >= len(out):
                    out.extend([""] * (c - len(out) + 1))
            for c in blocked:
                span_left[c] -= 1
            span_left.update(new_spans)
            if r == 0:
                header_first = all_header
            grid.append(out)
        width = max((len(row) for row in grid), default=0)
        if width == 0 or not any(cell for row in grid for cell in row):
            return []
        for row in grid:
            row.extend([""] * (width - len(row)))
        # GFM needs a header row; a table without one gets an empty header so data stays data.
        header = grid.pop(0) if header_first else [""] * width
        lines = [_table_row(header), "| " + " | ".join(["---"] * width) + " |"]
        lines.extend(_table_row(row) for row in grid)
        return [("table", lines)]

    def _cell(self, cell: Any, depth: int) -> str:
        was = self._in_cell
        self._in_cell = True
        try:
            if isinstance(cell, Mapping) and _type(cell) in ("tableCell", "tableHeader"):
                nid = id(cell)
                if nid in self._path:
                    return ""
                self._path.add(nid)
                try:
                    blocks = self.blocks(cell.get("content"), depth + 1)
                finally:
                    self._path.discard(nid)
            else:
                blocks = self.blocks([cell], depth + 1)
        finally:
            self._in_cell = was
        parts = [line.strip() for _, lines in blocks for line in lines if line.strip()]
        return "<br>".join(parts).replace("|", "\\|")

    # ---- inline -----------------------------------------------------------------------------

    def inline(self, nodes: Any, depth: int) -> str:
        """Render inline content; hard breaks come back as NUL, soft line breaks as LF."""
        items: list[Item] = []
        self._flatten(nodes, depth, items)
        if not items:
            return ""
        items = _merge_items(items)
        # Links with visible text somewhere; a span of such a link that ends up empty (split by
        # other marks) is dropped, while a link with no visible text at all shows its URL.
        self._visible_links = {m for kind, payload, marks in items if kind == "atom" or payload.strip() for m in marks}
        tree = _build_tree(items)
        toks = self._render_tree(tree, False)
        return self._finish(toks)

    def _flatten(self, nodes: Any, depth: int, items: list[Item]) -> None:
        for node in _iter_nodes(nodes):
            if isinstance(node, str):
                items.append(("text", _clean(node), _NO_MARKS))
            elif isinstance(node, Mapping):
                if depth > _MAX_DEPTH:
                    items.append(("text", _plain_text(node), _NO_MARKS))
                    continue
                nid = id(node)
                if nid in self._path:
                    continue
                self._path.add(nid)
                try:
                    self._flatten_node(node, depth, items)
                finally:
                    self._path.discard(nid)
            elif isinstance(node, int | float) and not isinstance(node, bool):
                items.append(("text", str(node), _NO_MARKS))

    def _flatten_node(self, node: Mapping[str, Any], depth: int, items: list[Item]) -> None:
        t = _type(node)
        attrs = _attrs(node)
        marks = _marks(node.get("marks"))
        if t == "text" or (not t and "text" in node):
            text = _clean(_str(node.get("text")))
            if text:
                items.append(_text_item(text, marks))
            return
        atom_marks = marks - {("code",)}
        if t == "hardBreak":
            items.append(_BR_ITEM)
        elif t == "mention":
            items.append(("atom", _escape(_mention_text(attrs)), atom_marks))
        elif t == "emoji":
            text = _emoji_text(attrs)
            if text:
                items.append(("atom", _escape(text), atom_marks))
        elif t == "status":
            text = " ".join(_str(attrs.get("text")).split())
            if text:
                items.append(("atom", f"[{_escape(text.upper(), True)}]", atom_marks))
        elif t == "date":
            text = _date_iso(attrs.get("timestamp"))
            if text:
                items.append(("text", text, atom_marks))
        elif t in ("inlineCard", "blockCard", "embedCard"):
            label, url = _card_parts(attrs)
            if url:
                items.append(("atom", _link_md(label, url), atom_marks - {k for k in marks if k[0] == "link"}))
            elif label:
                items.append(("text", label, atom_marks))
        elif t in ("media", "mediaInline"):
            items.append(("atom", _media_md(attrs), atom_marks - {k for k in marks if k[0] == "link"}))
        elif t == "placeholder":
            return  # prompt text of an empty template slot, not content
        elif t in ("inlineExtension", "extension", "bodiedExtension"):
            text = _clean(_str(attrs.get("text")))
            if text:
                items.append(("text", text, atom_marks))
            self._flatten(node.get("content"), depth + 1, items)
        elif t in _BLOCK_TYPES:
            # Block inside inline content (malformed): keep its text on its own line.
            items.append(_SOFT_ITEM)
            if t in ("expand", "nestedExpand"):
                items.append(("text", _clean(_str(attrs.get("title"))), _NO_MARKS))
                items.append(_SOFT_ITEM)
            self._flatten(node.get("content"), depth + 1, items)
            items.append(_SOFT_ITEM)
        else:
            text = _clean(_str(node.get("text")))
            if text:
                items.append(_text_item(text, marks))
            content = node.get("content")
            if content is not None:
                self._flatten(content, depth + 1, items)
            elif not text:
                own = _clean(_str(attrs.get("text")))
                if own:
                    items.append(("text", own, atom_marks))
                elif _str(attrs.get("url")).strip():
                    items.append(("atom", _link_md("", _str(attrs.get("url"))), _NO_MARKS))

    def _render_tree(self, children: list[Any], in_label: bool) -> list[Tok]:
        toks: list[Tok] = []
        for ch in children:
            kind = ch[0]
            if kind == "span":
                toks.extend(self._render_span(ch[1], ch[2], in_label))
            elif kind == "text" or kind == "code":
                payload = ch[1]
                core = payload.strip()
                if not core:
                    toks.append(("w", payload))
                    continue
                start = len(payload) - len(payload.lstrip())
                if start:
                    toks.append(("w", payload[:start]))
                toks.append(("x", _escape(core, in_label)) if kind == "text" else ("c", _code_span(core)))
                end = start + len(core)
                if end < len(payload):
                    toks.append(("w", payload[end:]))
            elif kind == "atom":
                toks.append(("a", ch[1]))
            else:
                toks.append(("b", "\x00"))
        return toks

    def _render_span(self, mark: tuple[str, ...], children: list[Any], in_label: bool) -> list[Tok]:
        is_link = mark[0] == "link"
        if (
            is_link
            and not mark[2]
            and len(children) == 1
            and children[0][0] == "text"
            and children[0][1].strip() == mark[1]
            and _AUTOLINK_RE.fullmatch(mark[1])
        ):
            payload = children[0][1]
            lead = payload[: len(payload) - len(payload.lstrip())]
            trail = payload[len(payload.rstrip()) :]
            return [t for t in (("w", lead), ("a", f"<{mark[1]}>"), ("w", trail)) if t[1]]
        inner = self._render_tree(children, in_label or is_link)
        i = 0
        while i < len(inner) and inner[i][0] == "w":
            i += 1
        j = len(inner)
        while j > i and inner[j - 1][0] == "w":
            j -= 1
        core = inner[i:j]
        if not core:
            if not is_link or mark in self._visible_links:
                return inner  # whitespace only: no "****", no empty link
            core = [("x", _escape(" ".join(mark[1].split()), True))]
        self._pair += 1
        pid = self._pair
        return [*inner[:i], ("o", pid, mark), *core, ("e", pid, mark), *inner[j:]]

    def _finish(self, toks: list[Tok]) -> str:
        """Join tokens, switching emphasis pairs CommonMark would misparse to inline HTML."""
        html: set[int] = set()
        n = len(toks)
        # At the start of a paragraph "[`a]`](u)" parses as a link reference definition "[`a]:"
        # when a code span in the label holds "]" (definitions ignore code spans): use <a> instead.
        first = next((t for t in toks if t[0] != "w"), None)
        if first is not None and first[0] == "o" and first[2][0] == "link":
            for t in toks[toks.index(first) + 1 :]:
                if t[0] == "e" and t[1] == first[1]:
                    break
                if t[0] == "c" and "]" in t[1]:
                    html.add(first[1])
                    break
        strs = [self._tok_str(t, html) for t in toks]
        delims = [i for i, t in enumerate(toks) if t[0] in ("o", "e") and t[2][0] in _FLANK_DELIMS]
        for _ in range(8):
            bad: set[int] = set()
            k = 0
            while k < len(delims):
                # A delimiter run = adjacent delimiter tokens of the same character.
                i = delims[k]
                ch = strs[i][0]
                m = k
                while m + 1 < len(delims) and delims[m + 1] == delims[m] + 1 and strs[delims[m + 1]][0] == ch:
                    m += 1
                j = delims[m]
                p = i - 1
                while p >= 0 and not strs[p]:
                    p -= 1
                q = j + 1
                while q < n and not strs[q]:
                    q += 1
                prev = strs[p][-1] if p >= 0 else ""
                nxt = strs[q][0] if q < n else ""
                run = [toks[x] for x in delims[k : m + 1]]
                mixed = any(t[0] == "e" for t in run) and any(t[0] == "o" for t in run)
                # A run that could both open and close (e.g. intraword "a**b") may pair with the
                # wrong partner, so only surely one-sided runs keep Markdown syntax.
                opens = _left_flanking(prev, nxt, True) and not _right_flanking(prev, nxt, False)
                closes = _right_flanking(prev, nxt, True) and not _left_flanking(prev, nxt, False)
                for t in run:
                    if mixed or not (opens if t[0] == "o" else closes):
                        bad.add(t[1])
                k = m + 1
            if not bad:
                break
            html |= bad
            for x in delims:
                if toks[x][1] in bad:
                    strs[x] = self._tok_str(toks[x], html)
            delims = [x for x in delims if toks[x][1] not in html]
        out: list[str] = []
        last_kind = ""
        last = ""
        for t, s in zip(toks, strs, strict=True):
            if not s:
                continue
            # "[STATUS]" or "[attachment: x]" followed by "(" or ":" would read as a link/definition.
            if t[0] == "x" and last_kind == "a" and last.endswith("]") and s[0] in "(:":
                s = "\\" + s
            # Text ending in "!" right before a link would turn the link into an image.
            elif s[0] == "[" and last_kind in ("x", "a") and last.endswith("!"):
                slashes = len(last) - 1 - len(last[:-1].rstrip("\\"))
                if slashes % 2 == 0:
                    out[-1] = last[:-1] + "\\!"
            out.append(s)
            last_kind, last = t[0], s
        return "".join(out)

    @staticmethod
    def _tok_str(tok: Tok, html: set[int]) -> str:
        kind = tok[0]
        if kind not in ("o", "e"):
            return tok[1]
        mark = tok[2]
        name = mark[0]
        if name == "link":
            if tok[1] in html:
                if kind == "e":
                    return "</a>"
                title = f' title="{html_escape(mark[2])}"' if mark[2] else ""
                return f'<a href="{html_escape(mark[1])}"{title}>'
            return "[" if kind == "o" else _link_close(mark[1], mark[2])
        if name in _FLANK_DELIMS and tok[1] not in html:
            return _FLANK_DELIMS[name]
        tag = _HTML_TAGS[name]
        return f"<{tag}>" if kind == "o" else f"</{tag}>"


def _text_item(text: str, marks: frozenset[tuple[str, ...]]) -> Item:
    # Code is not a span like the others: it is rendered per run, innermost, without escaping.
    if ("code",) in marks:
        return ("code", text, marks - {("code",)})
    return ("text", text, marks)


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _merge_items(items: list[Item]) -> list[Item]:
    """Merge adjacent runs with identical marks (ADF splits text at every edit/colour change)."""
    merged: list[Item] = [items[0]]
    for item in items[1:]:
        last = merged[-1]
        if item[0] == last[0] and item[0] in ("text", "code") and item[2] == last[2]:
            merged[-1] = (last[0], last[1] + item[1], last[2])
        else:
            merged.append(item)
    return merged


def _build_tree(items: list[Item]) -> list[Any]:
    """Nest runs under mark spans so each mark opens/closes once per contiguous stretch.

    Marks that continue for more runs open first (outermost), which keeps "**bold *both* bold**"
    instead of closing and reopening bold around the italic part. Hard breaks close every span.
    """
    n = len(items)
    runs: list[dict[tuple[str, ...], int]] = [{} for _ in range(n)]
    for i in range(n - 1, -1, -1):
        follow = runs[i + 1] if i + 1 < n else {}
        runs[i] = {m: 1 + follow.get(m, 0) for m in items[i][2]}
    root: list[Any] = []
    stack: list[tuple[tuple[str, ...] | None, list[Any]]] = [(None, root)]
    for i, item in enumerate(items):
        marks = item[2]
        k = 1
        while k < len(stack) and stack[k][0] in marks:
            k += 1
        del stack[k:]
        if marks:
            open_marks = {s[0] for s in stack[1:]}
            new = [m for m in marks if m not in open_marks]
            new.sort(key=lambda m: (-runs[i][m], _MARK_RANK.get(m[0], 9), m))
            for m in new:
                span: list[Any] = ["span", m, []]
                stack[-1][1].append(span)
                stack.append((m, span[2]))
        stack[-1][1].append(item)
    return root


# --------------------------------------------------------------------------------------------------
# Plain text (iterative: safe for any depth, cycles)
# --------------------------------------------------------------------------------------------------


def _plain_text(value: Any) -> str:
    out: list[str] = []
    path: set[int] = set()
    in_cell = 0
    # ops: 0 = visit value, 1 = emit string, 2 = leave node (pop from cycle path), 3/4 = enter/leave
    # a table cell (inside which block breaks become spaces so that a row stays on one line).
    stack: list[tuple[int, Any]] = [(0, value)]
    while stack:
        op, v = stack.pop()
        if op == 1:
            out.append(v)
            continue
        if op == 2:
            path.discard(v)
            continue
        if op == 3 or op == 4:
            in_cell += 1 if op == 3 else -1
            continue
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, str):
            out.append(_clean(v))
            continue
        if isinstance(v, int | float):
            out.append(str(v))
            continue
        if not isinstance(v, Mapping | list | tuple) or id(v) in path:
            continue
        path.add(id(v))
        stack.append((2, id(v)))
        if not isinstance(v, Mapping):
            stack.extend((0, x) for x in reversed(v))
            continue
        t = _type(v)
        own = _plain_own(t, v)
        if in_cell and own == "\n":
            own = " "
        if t in ("tableCell", "tableHeader"):
            before, after = "", "\t"
            stack.append((4, None))
        elif t == "tableRow":
            before, after = "", "\n"
        elif t in _BLOCK_TYPES:
            before = after = " " if in_cell else "\n"
        else:
            before = after = ""
        stack.append((1, after))
        content = v.get("content")
        if content is not None and t != "text":
            stack.append((0, content))
        stack.append((1, own))
        stack.append((1, before))
        if t in ("tableCell", "tableHeader"):
            stack.append((3, None))
    return "".join(out)


def _plain_own(t: str, node: Mapping[str, Any]) -> str:
    """The text a node itself contributes to plain text (children are visited separately)."""
    attrs = _attrs(node)
    if t == "text" or not t:
        return _clean(_str(node.get("text")))
    if t == "hardBreak":
        return "\n"
    if t == "mention":
        return _mention_text(attrs)
    if t == "emoji":
        return _emoji_text(attrs)
    if t == "status":
        return _str(attrs.get("text"))
    if t == "date":
        return _date_iso(attrs.get("timestamp"))
    if t in ("inlineCard", "blockCard", "embedCard"):
        label, url = _card_parts(attrs)
        return label or url
    if t in ("media", "mediaInline"):
        return _media_name(attrs)
    if t in ("expand", "nestedExpand"):
        return _str(attrs.get("title")) + "\n"
    if t == "placeholder":
        return ""
    if t in ("extension", "inlineExtension", "bodiedExtension") or t not in _BLOCK_TYPES:
        return _clean(_str(node.get("text")) or _str(attrs.get("text")))
    return ""


def _normalize_plain(text: str) -> str:
    lines: list[str] = []
    for raw in text.split("\n"):
        if "\t" in raw:  # a table row: tidy the cells, whose inner block breaks became spaces
            raw = "\t".join(_SPACES_RE.sub(" ", cell.strip(" ")) for cell in raw.split("\t"))
        line = raw.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()
