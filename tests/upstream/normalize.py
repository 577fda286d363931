#!/usr/bin/env python3
"""The one place where an upstream golden `output` and this device's transcript are made
comparable. Each rule names why it exists; everything not named here must match byte for byte.

    normalize.py GOLDEN TRANSCRIPT   prints what the rules changed and a diff; exit 0 when equal
"""
import difflib, re, sys

DROP = None
# (why, pattern, replacement or DROP), applied in order to every line of both files
RULES = [
    # stale-harness artefacts of the goldens (../shared/upstream/README.md): recorded through a
    # pty (\r\n), with colours and with the shell's xtrace (`+ `, `++ ` for subshells)
    ("pty line ends", re.compile(r"\r"), ""),
    ("ANSI colours", re.compile(r"\x1b\[[0-9;]*[A-Za-z]"), ""),
    ("xtrace", re.compile(r"^\++ .*"), DROP),
]


def normalize(lines):
    out, changed = [], 0
    for line in lines:
        new = line
        for _, pat, rep in RULES:
            if rep is DROP:
                if pat.search(new):
                    new = DROP
                    break
            else:
                new = pat.sub(rep, new)
        if new != line:
            changed += 1
        if new is not DROP:
            out.append(new)
    return out, changed


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace").split("\n")


def main():
    golden, g_changed = normalize(read(sys.argv[1]))
    actual, a_changed = normalize(read(sys.argv[2]))
    # a missing final newline is not a difference
    for lines in (golden, actual):
        while lines and lines[-1] == "":
            lines.pop()
    print(f"normalized: {g_changed} golden lines, {a_changed} transcript lines")
    if golden == actual:
        return 0
    sys.stdout.writelines(
        l + "\n" for l in difflib.unified_diff(golden, actual, "golden", "device", lineterm="", n=2)
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
