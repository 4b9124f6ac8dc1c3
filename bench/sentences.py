#!/usr/bin/env python3
"""Real sentences found on this machine, for a vector-search benchmark on
real embeddings (random vectors are HNSW's pathological case): the entries
of Debian's package changelogs and the sentences of the Python standard
library's docstrings, cleaned, deduplicated, and shuffled with a fixed
seed, one per line.

    python3 bench/sentences.py -n 46000 > sentences.txt

Stdlib only. The same machine gives the same file.
"""
import argparse
import ast
import glob
import gzip
import random
import re
import sys
import sysconfig

MIN, MAX = 24, 300
SPACE = re.compile(r"\s+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def clean(s: str):
    s = SPACE.sub(" ", s).strip()
    if not (MIN <= len(s) <= MAX):
        return None
    letters = sum(c.isalpha() for c in s)
    if letters < 0.6 * len(s) or len(s.split()) < 4:
        return None
    return s


def changelogs():
    for path in sorted(glob.glob("/usr/share/doc/*/changelog*.gz")):
        try:
            with gzip.open(path, "rt", errors="replace") as f:
                entry = []
                for line in f:
                    stripped = line.strip()
                    if stripped.startswith(("* ", "- ", "+ ")):
                        if entry:
                            yield " ".join(entry)
                        entry = [stripped[2:]]
                    elif stripped and entry and not stripped.startswith("--") and line.startswith("    "):
                        entry.append(stripped)
                    else:
                        if entry:
                            yield " ".join(entry)
                        entry = []
                if entry:
                    yield " ".join(entry)
        except (OSError, EOFError):
            continue


def docstrings():
    root = sysconfig.get_paths()["stdlib"]
    for path in sorted(glob.glob(f"{root}/**/*.py", recursive=True)):
        if "/test" in path or "/idlelib/" in path:
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                tree = ast.parse(f.read())
        except (SyntaxError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                for para in doc.split("\n\n"):
                    if para.lstrip().startswith((">>>", "..", ":")):
                        continue
                    yield from SENTENCE_END.split(SPACE.sub(" ", para))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=46000, help="sentences to print (fewer if the machine has fewer)")
    ap.add_argument("--seed", type=int, default=19)
    a = ap.parse_args()
    seen, out = set(), []
    for source in (changelogs(), docstrings()):
        for s in source:
            c = clean(s)
            if c and c.lower() not in seen:
                seen.add(c.lower())
                out.append(c)
    out.sort()
    random.Random(a.seed).shuffle(out)
    sys.stdout.write("\n".join(out[: a.n]) + "\n")
    print(f"sentences.py: {len(out)} distinct sentences found, {min(a.n, len(out))} printed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
