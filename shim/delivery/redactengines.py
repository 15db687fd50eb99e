"""The engines that find the redacted forms in a buffer; the redactor takes the fastest installed.

Each engine is built from the forms, longest first, and answers the same question: buffer ->
[(start, end)] of the leftmost, longest, non-overlapping forms. So the engine decides the speed,
never what is replaced (tests/unit/test_redact.py runs every engine on the same input).

Measured on 64 KiB chunks of log lines with 100 values (600 forms), docs/redact.md:

- Hyperscan (the `[redact]` extra on x86-64): a multi-literal scanner that reads 2.5-3 GB/s
  whatever the number of forms, faster than the pipe the output comes through;
- ahocorasick-rs (the `[redact]` extra elsewhere): 230-350 MB/s;
- the standard library's `re`, the forms as one trie: about a third of ahocorasick-rs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Matcher = Callable[[bytes], list[tuple[int, int]]]


def fastest(ordered: list[bytes]) -> Matcher:
    """The fastest engine that is installed and runs on this CPU."""
    for build in (hyperscan_matcher, aho_corasick_matcher):
        try:
            return build(ordered)
        except ImportError:   # the [redact] extra, or this engine of it, is not installed
            continue
    return regex_matcher(ordered)


def hyperscan_matcher(ordered: list[bytes]) -> Matcher:
    """Hyperscan reports where each form ends (overlaps included); the leftmost longest win."""
    import hyperscan  # lazy: the [redact] extra, only with --redact

    # Every byte as \\xHH: the binding reads a pure-literal pattern up to its first NUL byte,
    # a value may hold any byte, and the escaped expressions compile to the same literal scanner.
    expressions = [("\\x" + form.hex(" ").replace(" ", "\\x")).encode() for form in ordered]
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(expressions=expressions, ids=list(range(len(ordered))), flags=0)
    except hyperscan.error as error:   # e.g. a CPU without the instructions it needs
        raise ImportError(f"hyperscan cannot run here: {type(error).__name__}") from None
    lengths = [len(form) for form in ordered]

    def matches(buffer: bytes) -> list[tuple[int, int]]:
        ends: list[tuple[int, int]] = []
        database.scan(buffer, match_event_handler=lambda form, _start, end, _flags, _context:
                      ends.append((end - lengths[form], end)))
        return _leftmost_longest(ends) if ends else ends

    return matches


def _leftmost_longest(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans.sort(key=lambda span: (span[0], -span[1]))
    chosen, reached = [], 0
    for start, end in spans:
        if start >= reached:
            chosen.append((start, end))
            reached = end
    return chosen


def aho_corasick_matcher(ordered: list[bytes]) -> Matcher:
    """Aho-Corasick in one pass, the forms in order of priority (longest first)."""
    import ahocorasick_rs  # lazy: the [redact] extra, only with --redact

    automaton = ahocorasick_rs.BytesAhoCorasick(
        ordered, matchkind=ahocorasick_rs.MatchKind.LeftmostFirst,
        implementation=ahocorasick_rs.Implementation.DFA)   # measured: 1.2-1.8x the NFA's speed
    return lambda buffer: [(start, end) for _, start, end in
                           automaton.find_matches_as_indexes(buffer)]


def regex_matcher(ordered: list[bytes]) -> Matcher:
    """One regular expression of the forms as a trie: each position costs a few byte
    comparisons, not one per form."""
    regex = re.compile(_trie_pattern(ordered))
    return lambda buffer: [match.span() for match in regex.finditer(buffer)]


def _trie_pattern(words: list[bytes]) -> bytes:
    trie: dict = {}
    for word in words:
        node = trie
        for byte in word:
            node = node.setdefault(byte, {})
        node[None] = {}
    return _node_pattern(trie)


def _node_pattern(node: dict) -> bytes:
    # Longer continuations first, so the regex prefers the longest form at a position.
    branches = [re.escape(bytes([byte])) + _node_pattern(child)
                for byte, child in sorted(node.items(), key=lambda item: (item[0] is None, item[0] or 0))
                if byte is not None]
    if not branches:
        return b""
    body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
    return b"(?:" + body + b")?" if None in node else body


ENGINES: dict[str, Callable[[list[bytes]], Matcher]] = {
    "hyperscan": hyperscan_matcher, "ahocorasick-rs": aho_corasick_matcher,
    "re": regex_matcher}
