#!/usr/bin/env python3
"""Sums symbol sizes of an unstripped ELF by Rust crate (first path segment of the demangled
name), like `cargo bloat --crates` but with binutils' nm only, so it works for every port
without installing anything. Prints the top N lines: bytes, share of all symbols, crate."""
import subprocess, sys, collections

def crate_of(name: str) -> str:
    n = name
    while n.startswith("<"):  # <impl Trait for crate::Type>, <crate::T as ...>
        n = n[1:]
    for prefix in ("impl ", "dyn ", "&mut ", "&"):
        if n.startswith(prefix):
            n = n[len(prefix):]
    if "::" in n:
        head = n.split("::", 1)[0]
        if head.replace("_", "").isalnum():
            return head
    return "[C/asm/other]"

def main() -> int:
    path, top = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8
    out = subprocess.run(["nm", "-S", "--size-sort", "-C", "--defined-only", path],
                         capture_output=True, text=True, check=True).stdout
    sizes = collections.Counter()
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4:
            continue
        try:
            sizes[crate_of(parts[3])] += int(parts[1], 16)
        except ValueError:
            continue
    total = sum(sizes.values()) or 1
    for crate, size in sizes.most_common(top):
        print(f"    {size:>9}  {100*size/total:5.1f}%  {crate}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
