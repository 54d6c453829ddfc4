"""A Slack Block Kit message as a person reads it in Slack, for `retention alert --dry-run` on a terminal.

Slack shows links by their label, bold as bold and code as code, without the markup; it turns `&gt;` back
into `>` and `:white_check_mark:` into an emoji. The dry run shows the same reading, and each link's address
on a line of its own so it can still be opened from the terminal. Generic over the blocks the digest uses
(header, section, context, divider), so a change of the digest's content needs no change here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
BARE_LINK = re.compile(r"<(https?://[^|>]+)>")
EMOJI = {":white_check_mark:": "✓", ":warning:": "!", ":rotating_light:": "!"}
ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))  # &amp; last: "&amp;gt;" is a literal "&gt;"


def plain(mrkdwn: str) -> tuple[str, list[str]]:
    """The text as Slack shows it, and the addresses of its links (in order)."""
    urls = [m.group(1) for m in LINK.finditer(mrkdwn)] + [m.group(1) for m in BARE_LINK.finditer(mrkdwn)]
    text = LINK.sub(r"\2", mrkdwn)
    text = BARE_LINK.sub(r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"\1", text)  # *bold*
    text = re.sub(r"`([^`\n]+)`", r"\1", text)  # `code`
    for code, shown in EMOJI.items():
        text = text.replace(code, shown)
    for entity, char in ENTITIES:
        text = text.replace(entity, char)
    return text, urls


def _block_lines(block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        title = str(block.get("text", {}).get("text", ""))
        return [title, "=" * min(len(title), 60)]
    if kind == "divider":
        return [""]
    texts = [block.get("text")] if kind == "section" else list(block.get("elements") or [])
    lines: list[str] = []
    for item in texts:
        if not isinstance(item, dict):
            continue
        text, urls = plain(str(item.get("text", "")))
        lines.extend(text.splitlines())
        lines.extend(f"  {url}" for url in urls)
    return [*lines, ""] if kind == "section" else lines


def message_lines(payloads: Iterable[dict[str, Any]]) -> list[str]:
    """Every message's blocks as plain lines, a blank line between sections and between messages."""
    lines: list[str] = []
    for n, payload in enumerate(payloads):
        if n:
            lines.append("")
        blocks = payload.get("blocks") or []
        if not blocks:
            lines.extend(plain(str(payload.get("text", "")))[0].splitlines())
        for block in blocks:
            lines.extend(_block_lines(block))
    while lines and not lines[-1]:
        lines.pop()
    return lines
