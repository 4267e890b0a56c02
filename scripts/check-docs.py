#!/usr/bin/env python3
"""Check that the documentation cites only what exists.

For README.md, ARCHITECTURE.md and docs/*.md:

* every back-ticked repository path (`src/...`, `tests/...`, `policies/...`,
  ...) exists;
* every back-ticked `file.rs::name` names a test function (`#[test]` or
  `#[tokio::test]`, possibly inside `proptest!`) defined in that file;
* every relative Markdown link points at a file of the repository (anchors
  are not checked), and nothing links outside it (`../`) or to the product
  specification that is not part of the repository.

Run from anywhere: `python3 scripts/check-docs.py`. Exits non-zero listing
every problem.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "ARCHITECTURE.md"] + sorted(
    os.path.join("docs", f)
    for f in os.listdir(os.path.join(ROOT, "docs"))
    if f.endswith(".md")
)
# Top-level directories whose files the documents cite. `certs/` is left out:
# its files are generated (only certs/README.md is committed).
PREFIXES = (
    "src/", "tests/", "policies/", "migrations/", "scripts/", "packaging/",
    "docs/", "bench/", "benches/", "fuzz/", ".ci/", "crates/",
)
TICKED = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TEST_ATTR = re.compile(r"^\s*#\[(tokio::)?test\b")
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(async\s+)?fn\s+([A-Za-z0-9_]+)")

_tests = {}


def tests_in(path):
    """Names of the test functions defined in a Rust file."""
    if path not in _tests:
        names, pending = set(), False
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            for line in f:
                s = line.strip()
                if TEST_ATTR.match(s):
                    pending = True
                    continue
                m = FN.match(s)
                if m:
                    if pending:
                        names.add(m.group(4))
                    pending = False
                elif pending and s and not (s.startswith("#[") or s.startswith("//")):
                    pending = False
        _tests[path] = names
    return _tests[path]


def check(doc, problems):
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    # Fenced code blocks hold commands and output, not citations.
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for lineno, line in enumerate(prose.split("\n"), 1):
        where = f"{doc}: `{{}}`"
        for tok in TICKED.findall(line):
            tok = tok.strip()
            if " " in tok or any(c in tok for c in "{}<>*…|"):
                continue
            name = None
            if "::" in tok:
                tok, name = tok.split("::", 1)
            if not tok.startswith(PREFIXES):
                continue
            if not os.path.exists(os.path.join(ROOT, tok)):
                problems.append(where.format(tok) + " does not exist")
                continue
            if name is not None and tok.endswith(".rs"):
                if not re.fullmatch(r"[a-z0-9_]+", name) or name not in tests_in(tok):
                    problems.append(where.format(f"{tok}::{name}") + " is not a test in that file")
    for target in LINK.findall(text):
        if "SPEC.md" in target or "shared/" in target:
            problems.append(f"{doc}: links to {target}, which is not part of the repository")
            continue
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        full = os.path.normpath(os.path.join(ROOT, os.path.dirname(doc), path))
        if not full.startswith(ROOT + os.sep) and full != ROOT:
            problems.append(f"{doc}: links outside the repository: {target}")
        elif not os.path.exists(full):
            problems.append(f"{doc}: broken link {target}")
    for bad in ("../shared", "SPEC.md"):
        if bad in text:
            problems.append(f"{doc}: mentions {bad}")


def main():
    problems = []
    for doc in DOCS:
        check(doc, problems)
    for p in problems:
        print(p)
    cited = sum(len(v) for v in _tests.values())
    if problems:
        print(f"check-docs: {len(problems)} problem(s)")
        return 1
    print(f"check-docs: {len(DOCS)} documents ok ({len(_tests)} test files indexed, {cited} tests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
