"""Seeded generator of Atlassian Document Format (ADF) documents and plain texts.

Every text field of Jira REST v3 (descriptions, comment bodies, worklog comments, textarea custom
fields) is ADF JSON, so the downstream ADF->Markdown converter must meet every node kind that real
editors produce: headings, nested bullet/ordered lists, code blocks with a language, tables with
header cells, mentions, emoji, links and other marks, panels, hard breaks, blockquotes, rules,
media, inline cards, status lozenges, dates and expands. Texts mix in emoji, CJK, RTL
Arabic/Hebrew and Markdown-significant characters on purpose.

Documents are a pure function of an integer seed, so the simulator stores only the seed per
issue/comment/worklog and builds the (possibly large) document lazily when it is first rendered.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from typing import Any

Node = dict[str, Any]

WORDS = (
    "deploy pipeline cache latency timeout retry index shard replica token session gateway "
    "webhook schema migration rollback release branch merge review ticket backlog sprint "
    "estimate customer invoice report dashboard alert metric query cluster node worker queue "
    "payload export import sync delta cursor partition warehouse parquet column encoding "
    "regression flaky test build artifact container image registry secret rotation audit "
    "permission role group project board epic story incident postmortem runbook capacity"
).split()

# deliberately "ambiguous" characters: the pipeline must carry them through unchanged
UNICODE_SNIPPETS = (
    "Überprüfung der Größe ✓",
    "日本語のテキストを含む課題",
    "中文测试内容：数据同步失败",  # noqa: RUF001
    "한국어 설명 텍스트",
    "مرحبا بالعالم — تقرير الأخطاء",
    "שלום עולם, בדיקת כיווניות",
    "naïve café “quoted” — en–dash",  # noqa: RUF001
    "emoji 🚀🔥✅ and a flag 🇩🇪",
    "math ∑ x² ≤ ∞ and arrows → ←",
    "Markdown *stars* _under_ `ticks` | pipes | [brackets](x) <tag> & amp # hash",
    "Ελληνικά κείμενα και Кириллица",
    "combining e\u0301 and zero\u200bwidth",
)

EMOJI = (
    (":rocket:", "1f680", "🚀"),
    (":fire:", "1f525", "🔥"),
    (":white_check_mark:", "2705", "✅"),
    (":smile:", "1f604", "😄"),
    (":warning:", "26a0", "⚠️"),
    (":thumbsup:", "1f44d", "👍"),
    (":tada:", "1f389", "🎉"),
    (":bug:", "1f41b", "🐛"),
)

CODE_SAMPLES = (
    ("python", 'def handler(event):\n    """Retry with jitter."""\n    return {"status": 200}\n'),
    ("sql", "SELECT id, updated\nFROM jira_issues\nWHERE updated >= now() - interval '1 day';\n"),
    ("javascript", "const res = await fetch(url, { headers: { Accept: 'application/json' } });\n"),
    ("bash", "curl -s -H 'Accept: application/json' \"$URL\" | jq '.issues | length'\n"),
    ("json", '{\n  "jql": "project = ENG",\n  "maxResults": 100\n}\n'),
    ("java", "public final class Main {\n  public static void main(String[] a) { }\n}\n"),
    ("yaml", "steps:\n  - run: make test\n  - run: make deploy # ``` fence inside\n"),
    ("go", 'package main\n\nfunc main() { println("hi") }\n'),
)

PANEL_TYPES = ("info", "note", "warning", "success", "error")
STATUS_LOZENGES = (("IN PROGRESS", "blue"), ("DONE", "green"), ("BLOCKED", "red"), ("TODO", "neutral"))
LINK_HOSTS = (
    "https://example.com/docs",
    "https://status.example.org/incidents",
    "https://github.com/org/repo/pull",
)


def words(rng: random.Random, lo: int, hi: int) -> str:
    # choices() is several times faster than a choice() per word; generation speed matters here
    return " ".join(rng.choices(WORDS, k=lo + int(rng.random() * (hi - lo + 1))))


def sentence(rng: random.Random, lo: int = 5, hi: int = 14) -> str:
    s = words(rng, lo, hi)
    if rng.random() < 0.15:
        s += " " + rng.choice(UNICODE_SNIPPETS)
    return s[:1].upper() + s[1:] + "."


def summary_text(rng: random.Random) -> str:
    """An issue summary: mostly plain, sometimes unicode-heavy or with Markdown-looking text."""
    s = words(rng, 3, 9)
    s = s[:1].upper() + s[1:]
    r = rng.random()
    if r < 0.12:
        s = f"{s} {rng.choice(UNICODE_SNIPPETS)}"
    elif r < 0.16:
        s = f"[{rng.choice(('API', 'UI', 'DB'))}] {s} — follow-up"
    return s


def text(value: str, marks: list[Node] | None = None) -> Node:
    node: Node = {"type": "text", "text": value}
    if marks:
        node["marks"] = marks
    return node


def _marks(rng: random.Random) -> list[Node] | None:
    r = rng.random()
    if r < 0.55:
        return None
    if r < 0.65:
        return [{"type": "strong"}]
    if r < 0.73:
        return [{"type": "em"}]
    if r < 0.79:
        return [{"type": "code"}]
    if r < 0.83:
        return [{"type": "strike"}]
    if r < 0.86:
        return [{"type": "underline"}]
    if r < 0.88:
        return [{"type": "textColor", "attrs": {"color": "#ff5630"}}]
    if r < 0.90:
        return [{"type": "subsup", "attrs": {"type": rng.choice(("sub", "sup"))}}]
    if r < 0.93:
        return [{"type": "strong"}, {"type": "em"}]
    href = f"{rng.choice(LINK_HOSTS)}/{rng.randint(1, 9999)}"
    return [{"type": "link", "attrs": {"href": href}}]


def inline_content(
    rng: random.Random, users: Sequence[tuple[str, str]], lo: int = 1, hi: int = 5
) -> list[Node]:
    """Inline nodes of one paragraph: text runs with marks, mentions, emoji, breaks, cards."""
    out: list[Node] = []
    for i in range(rng.randint(lo, hi)):
        r = rng.random()
        if i and r < 0.10 and users:
            account_id, name = rng.choice(users)
            out.append(
                {"type": "mention", "attrs": {"id": account_id, "text": f"@{name}", "accessLevel": ""}}
            )
            out.append(text(" "))
        elif i and r < 0.17:
            short, hexid, char = rng.choice(EMOJI)
            out.append({"type": "emoji", "attrs": {"shortName": short, "id": hexid, "text": char}})
            out.append(text(" "))
        elif i and r < 0.21:
            out.append({"type": "hardBreak"})
        elif i and r < 0.23:
            url = f"{rng.choice(LINK_HOSTS)}/{rng.randint(1, 9999)}"
            out.append({"type": "inlineCard", "attrs": {"url": url}})
            out.append(text(" "))
        elif i and r < 0.245:
            label, color = rng.choice(STATUS_LOZENGES)
            out.append({"type": "status", "attrs": {"text": label, "color": color, "localId": _uuid(rng)}})
            out.append(text(" "))
        elif i and r < 0.26:
            out.append(
                {
                    "type": "date",
                    "attrs": {"timestamp": str(rng.randint(1_600_000_000, 1_750_000_000) * 1000)},
                }
            )
            out.append(text(" "))
        else:
            out.append(text(sentence(rng) + " ", _marks(rng)))
    # ADF text nodes must not be empty; trailing spaces are harmless but trim the last run.
    last = out[-1]
    if last.get("type") == "text" and last["text"].strip():
        last["text"] = last["text"].rstrip()
    elif last.get("type") == "text":
        out.pop()
    return out or [text(sentence(rng))]


def paragraph(rng: random.Random, users: Sequence[tuple[str, str]], lo: int = 1, hi: int = 4) -> Node:
    return {"type": "paragraph", "content": inline_content(rng, users, lo, hi)}


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def list_node(rng: random.Random, users: Sequence[tuple[str, str]], depth: int = 0) -> Node:
    ordered = rng.random() < 0.4
    items: list[Node] = []
    for _ in range(rng.randint(2, 4)):
        content: list[Node] = [paragraph(rng, users, 1, 2)]
        if depth < 2 and rng.random() < 0.3:
            content.append(list_node(rng, users, depth + 1))
        items.append({"type": "listItem", "content": content})
    if ordered:
        return {"type": "orderedList", "attrs": {"order": 1}, "content": items}
    return {"type": "bulletList", "content": items}


def code_block(rng: random.Random) -> Node:
    lang, body = rng.choice(CODE_SAMPLES)
    node: Node = {"type": "codeBlock", "content": [text(body)]}
    if rng.random() < 0.9:
        node["attrs"] = {"language": lang}
    return node


def table(rng: random.Random, users: Sequence[tuple[str, str]], rows: int | None = None) -> Node:
    cols = rng.randint(2, 4)
    nrows = rows if rows is not None else rng.randint(2, 4)
    header = {
        "type": "tableRow",
        "content": [
            {
                "type": "tableHeader",
                "attrs": {},
                "content": [{"type": "paragraph", "content": [text(f"Col {c + 1}")]}],
            }
            for c in range(cols)
        ],
    }
    body = [
        {
            "type": "tableRow",
            "content": [
                {"type": "tableCell", "attrs": {}, "content": [paragraph(rng, users, 1, 1)]}
                for _ in range(cols)
            ],
        }
        for _ in range(nrows)
    ]
    return {
        "type": "table",
        "attrs": {"isNumberColumnEnabled": False, "layout": "default"},
        "content": [header, *body],
    }


def media(rng: random.Random) -> Node:
    return {
        "type": "mediaSingle",
        "attrs": {"layout": "center"},
        "content": [
            {
                "type": "media",
                "attrs": {
                    "id": _uuid(rng),
                    "type": "file",
                    "collection": "",
                    "width": rng.choice((640, 800, 1024)),
                    "height": rng.choice((360, 480, 600)),
                    "alt": "screenshot.png",
                },
            }
        ],
    }


BLOCK_KINDS = (
    "paragraph",
    "heading",
    "list",
    "codeBlock",
    "table",
    "panel",
    "blockquote",
    "rule",
    "media",
    "expand",
    "long_paragraph",
)
_KIND_CUTS = (0.30, 0.40, 0.55, 0.63, 0.69, 0.75, 0.81, 0.85, 0.90, 0.94, 1.01)


def block_of_kind(rng: random.Random, users: Sequence[tuple[str, str]], kind: str) -> Node:
    if kind == "paragraph":
        return paragraph(rng, users)
    if kind == "heading":
        return {
            "type": "heading",
            "attrs": {"level": rng.randint(1, 4)},
            "content": [text(words(rng, 2, 5).title())],
        }
    if kind == "list":
        return list_node(rng, users)
    if kind == "codeBlock":
        return code_block(rng)
    if kind == "table":
        return table(rng, users)
    if kind == "panel":
        return {
            "type": "panel",
            "attrs": {"panelType": rng.choice(PANEL_TYPES)},
            "content": [paragraph(rng, users, 1, 2)],
        }
    if kind == "blockquote":
        return {"type": "blockquote", "content": [paragraph(rng, users, 1, 2)]}
    if kind == "rule":
        return {"type": "rule"}
    if kind == "media":
        return media(rng)
    if kind == "expand":
        return {
            "type": "expand",
            "attrs": {"title": words(rng, 2, 4)},
            "content": [paragraph(rng, users, 1, 2)],
        }
    return paragraph(rng, users, 2, 6)


def block(rng: random.Random, users: Sequence[tuple[str, str]]) -> Node:
    r = rng.random()
    for kind, cut in zip(BLOCK_KINDS, _KIND_CUTS, strict=True):
        if r < cut:
            return block_of_kind(rng, users, kind)
    return paragraph(rng, users)


def doc(content: list[Node]) -> Node:
    return {"type": "doc", "version": 1, "content": content}


def _enc(node: Node) -> bytes:
    return json.dumps(node, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_DOC_HEAD = b'{"type":"doc","version":1,"content":['
_MASK64 = (1 << 64) - 1


class AdfPool:
    """Pre-generated, pre-encoded ADF blocks of one site; documents are picked from it by seed.

    Generating a fresh document per issue costs ~100 µs and its JSON encoding as much again; a
    20k-issue site would spend seconds on that. Documents assembled from a pool of ~2k blocks are
    just as varied for a converter (every node kind, nesting, marks, unicode) and cost a few µs,
    as dicts (for truth) and as bytes (for responses) alike. The first blocks cover every kind,
    so every pool — however small the site — contains all of them.
    """

    def __init__(self, seed: int | str, users: Sequence[tuple[str, str]], size: int = 1500) -> None:
        rng = random.Random(f"adf-pool:{seed}")
        self.blocks = [block_of_kind(rng, users, k) for k in BLOCK_KINDS]
        self.blocks += [block(rng, users) for _ in range(size - len(self.blocks))]
        self.paras = [paragraph(rng, users) for _ in range(size // 2)]
        self.short = [paragraph(rng, users, 1, 2) for _ in range(size // 2)]
        self.lists = [list_node(rng, users) for _ in range(64)]
        self.block_enc = [_enc(b) for b in self.blocks]
        self.para_enc = [_enc(b) for b in self.paras]
        self.short_enc = [_enc(b) for b in self.short]
        self.list_enc = [_enc(b) for b in self.lists]

    def _pick(self, seed: int, kind: str) -> list[tuple[list[Node], list[bytes], int]]:
        # a 64-bit LCG instead of random.Random(seed): seeding a Mersenne Twister per document
        # would cost more than assembling the document
        x = (seed * 6364136223846793005 + 1442695040888963407) & _MASK64

        def nxt(n: int) -> int:
            nonlocal x
            x = (x * 6364136223846793005 + 1442695040888963407) & _MASK64
            return (x >> 33) % n

        if kind == "description":
            out = [(self.paras, self.para_enc, nxt(len(self.paras)))]
            out += [(self.blocks, self.block_enc, nxt(len(self.blocks))) for _ in range(nxt(8))]
            return out
        if kind == "comment":
            out = [(self.paras, self.para_enc, nxt(len(self.paras)))]
            if nxt(10) < 3:
                out.append((self.blocks, self.block_enc, nxt(len(self.blocks))))
            return out
        out = [(self.short, self.short_enc, nxt(len(self.short)))]
        if nxt(20) < 3:
            out.append((self.lists, self.list_enc, nxt(len(self.lists))))
        return out

    def doc(self, seed: int, kind: str) -> Node:
        """`kind`: ``description`` (1-8 blocks), ``comment`` (1-2) or ``short`` (worklog comments,
        textarea custom fields)."""
        return doc([nodes[i] for nodes, _, i in self._pick(seed, kind)])

    def doc_bytes(self, seed: int, kind: str) -> bytes:
        return _DOC_HEAD + b",".join(enc[i] for _, enc, i in self._pick(seed, kind)) + b"]}"


def huge_description(seed: int, users: Sequence[tuple[str, str]], target_bytes: int) -> Node:
    """One very large description (default ~200 KB of JSON) to exercise body-size handling."""
    rng = random.Random(seed)
    blocks: list[Node] = [paragraph(rng, users, 2, 4)]
    size = 0
    section = 0
    while size < target_bytes:
        section += 1
        part = [
            {
                "type": "heading",
                "attrs": {"level": 2},
                "content": [text(f"Section {section}: {words(rng, 2, 4)}")],
            },
            paragraph(rng, users, 3, 6),
            list_node(rng, users),
            code_block(rng),
            table(rng, users, rows=3),
            paragraph(rng, users, 3, 6),
        ]
        size += sum(len(json.dumps(p, ensure_ascii=False).encode()) for p in part)
        blocks.extend(part)
    return doc(blocks)
