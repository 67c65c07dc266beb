"""Local token estimates, used only when an upstream reports no usage.

Roughly four characters a token for English text with the usual BPE tokenizers; good enough
to bill a broken stream fairly, never used when the upstream counts.
"""

import json

PER_MESSAGE_OVERHEAD = 4


def estimate_text(text):
    return (len(text) + 3) // 4 if text else 0


def message_text(content):
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
        elif isinstance(part, dict):
            parts.append(" ")  # images and files: counted by the upstream, not guessed here
    return "".join(parts)


# Tokens assumed for an image, audio or file part when reserving: more than most images cost.
NON_TEXT_PART_RESERVE = 1600


def prompt_upper_estimate(body):
    """A generous prompt size for reservations: two bytes of UTF-8 a token (most tokenizers
    average three to four) and a fixed allowance per non-text part."""
    total = 0
    for message in body.get("messages", []):
        content = message.get("content")
        parts = content if isinstance(content, list) else ()
        total += PER_MESSAGE_OVERHEAD + NON_TEXT_PART_RESERVE * sum(
            1 for p in parts if isinstance(p, dict) and p.get("type") != "text"
        )
        total += _half_bytes(message_text(content))
        if message.get("tool_calls"):
            total += _half_bytes(json.dumps(message["tool_calls"]))
    if body.get("tools"):
        total += _half_bytes(json.dumps(body["tools"]))
    return total


def _half_bytes(text):
    return (len(text.encode("utf-8")) + 1) // 2


def estimate_prompt(body):
    total = 0
    for message in body.get("messages", []):
        total += PER_MESSAGE_OVERHEAD + estimate_text(message_text(message.get("content")))
        if message.get("tool_calls"):
            total += estimate_text(json.dumps(message["tool_calls"]))
    if body.get("tools"):
        total += estimate_text(json.dumps(body["tools"]))
    return total
