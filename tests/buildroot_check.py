#!/usr/bin/env python3
"""Checks a BR2_EXTERNAL tree the way Buildroot's `utils/check-package -b` does, plus the
structure and variables a cargo package of an external tree needs. Buildroot itself cannot be
fetched here, so its rules are re-stated (not copied) from its check-package library and manual:

  every checked file  trailing whitespace, newline at EOF, no empty last line, no two
                      consecutive empty lines
  Config.in*          attribute order (type, default, depends on, select, help); attributes
                      indented with one tab, config/menu/if/source/... not indented;
                      continuation lines indented with tabs; help text "<tab><2 spaces>", at
                      most 62 characters (URL-only lines exempt), first line not blank;
                      no "default n"; no config defined twice under the same condition;
                      not executable
  *.mk                the 80-hash package header; tabs exactly inside define/endef, rule
                      recipes and backslash continuations; no unconditional re-assignment,
                      no conditional override of _CONF_OPTS/_DEPENDENCIES; no default
                      <PKG>_SOURCE; one space before a backslash, none on the last line;
                      every variable prefixed with the package name; no default-valued
                      flags (_INSTALL_TARGET = YES...); $() not ${}; ASCII only;
                      not executable
  *.hash              three fields "<type>  <hex>  <file>" separated by two spaces; known
                      hash type with the matching number of hex digits
  configs/*_defconfig BR2_DOWNLOAD_FORCE_CHECK_HASHES=y
  shell scripts       shellcheck clean
Structure (manual, "Keeping customizations outside of Buildroot" and the cargo infrastructure):
  external.desc with a valid name; external.mk including package/*/*.mk; Config.in sourcing
  each package's Config.in through $BR2_EXTERNAL_<NAME>_PATH; per package Config.in, <pkg>.mk,
  <pkg>.hash; <PKG>_VERSION/_SITE/_LICENSE/_LICENSE_FILES set; $(eval $(cargo-package)) last;
  BR2_PACKAGE_<PKG> depends on BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS and selects
  BR2_PACKAGE_HOST_RUSTC; a hash line for the source tarball and one per license file.
Project specifics: PANTAVISOR_VERSION equals Cargo.toml's version, the LICENSE hash is the
real one, every Cargo.toml feature has a Config.in option that passes it to cargo, every
BR2_PACKAGE_PANTAVISOR_* option is used by the .mk and every one used is defined, and the
files a defconfig names through $(BR2_EXTERNAL_<NAME>_PATH) exist.

usage: buildroot_check.py BR2_EXTERNAL_DIR [CRATE_DIR]   (CRATE_DIR: where Cargo.toml and
LICENSE are, default: the parent of BR2_EXTERNAL_DIR). Prints "file:line: message" lines, then
"N lines processed" and "M warnings generated"; exits 1 when there are warnings.
"""
import hashlib
import os
import re
import subprocess
import sys

warnings = []
lines_processed = 0


def warn(path, lineno, msg):
    warnings.append(f"{path}:{lineno}: {msg}")


def read_lines(path):
    global lines_processed
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    lines_processed += len(lines)
    return text, lines


# -- rules for every checked file ---------------------------------------------------------

def check_common(path, text, lines):
    if text and not text.endswith("\n"):
        warn(path, len(lines), "missing newline at end of file")
    if lines and lines[-1].strip() == "":
        warn(path, len(lines), "remove empty line at the end of the file")
    prev_empty = False
    for n, line in enumerate(lines, 1):
        if line != line.rstrip(" \t"):
            warn(path, n, "line contains trailing whitespace")
        empty = line.strip() == ""
        if empty and prev_empty:
            warn(path, n, "consecutive empty lines")
        prev_empty = empty


def check_not_executable(path):
    if os.access(path, os.X_OK):
        warn(path, 0, "This file does not need to be executable")


# -- Config.in ------------------------------------------------------------------------------

NOT_INDENTED = {"choice", "comment", "config", "endchoice", "endif", "endmenu", "if", "menu",
                "menuconfig", "source"}
INDENTED = {"bool", "default", "depends", "help", "prompt", "select", "string"}
ORDER = {"bool": 1, "prompt": 1, "string": 1, "default": 2, "depends": 3, "select": 4, "help": 5}


def check_config_in(path):
    text, lines = read_lines(path)
    check_common(path, text, lines)
    check_not_executable(path)
    state = 0
    in_help = False
    help_first = False
    backslash = False
    defined = {}
    conditions = []
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        blank_or_comment = stripped == "" or stripped.startswith("#")
        help_line = line.startswith("\t  ")
        # help text
        if not blank_or_comment:
            word = line.split()[0]
            if word in NOT_INDENTED:
                in_help = False
            elif stripped == "help":
                in_help, help_first = True, True
            elif in_help:
                pat = r"^\t  \S.{,61}$" if help_first else r"^\t  .{,62}$"
                help_first = False
                if not re.match(pat, line.rstrip()) and \
                        not re.match(r"^(http|https|git)://\S*$", stripped):
                    warn(path, n, "help text: <tab><2 spaces><62 chars>")
        if blank_or_comment or help_line:
            backslash = False
            continue
        word = line.split()[0]
        # indentation
        if backslash:
            if not line.startswith("\t"):
                warn(path, n, "continuation line should be indented using tabs")
        elif word in INDENTED and not line.startswith("\t" + word):
            warn(path, n, "should be indented with one tab")
        elif word in NOT_INDENTED and not line.startswith(word):
            warn(path, n, "should not be indented")
        backslash = bool(re.match(r"^[^#].*\\$", line))
        # attribute order
        if word in NOT_INDENTED:
            state = 0
        elif word in ORDER:
            if state > ORDER[word]:
                warn(path, n, "attributes order: type, default, depends on, select, help")
            state = ORDER[word]
        # default n
        if re.match(r"^\tdefault n$", line.split("#")[0].rstrip()):
            warn(path, n, "boolean symbols default to 'n', so 'default n' is redundant")
        # redefinitions
        m = re.match(r"^\s*if\s+([^#]*)\b", line)
        if m:
            conditions.append(m.group(1))
            continue
        if re.match(r"^\s*endif\b", line):
            if conditions:
                conditions.pop()
            continue
        m = re.match(r"^\s*(menu|)config\s+(BR2_\w+)\b", line)
        if m:
            key = (m.group(2), " AND ".join(conditions))
            if key in defined:
                warn(path, n, f"config {m.group(2)} redeclared (previous line: {defined[key]})")
            defined[key] = n
    return lines


# -- .mk ------------------------------------------------------------------------------------

COND_START = ("ifdef", "ifeq", "ifndef", "ifneq")
ALLOWED_FOREIGN = re.compile(r"BR_NO_CHECK_HASH_FOR|TARGETS_ROOTFS|PACKAGES_PERMISSIONS_TABLE")


def check_mk(path):
    text, lines = read_lines(path)
    check_common(path, text, lines)
    check_not_executable(path)
    pkg = os.path.splitext(os.path.basename(path))[0]
    upper = pkg.replace("-", "_").upper()
    # header
    if not (lines and lines[0].startswith("include ")):
        for n, want in ((1, "#" * 80), (2, "#"), (4, "#"), (5, "#" * 80), (6, "")):
            got = lines[n - 1].rstrip() if len(lines) >= n else None
            if got != want:
                what = {80: "should be 80 hashes", 1: "should be 1 hash", 0: "should be a blank line"}
                warn(path, n, what[len(want)])
    define = backslash = target = False
    cond = 0
    uncond_set, cond_set = set(), set()
    for n, line in enumerate(lines, 1):
        # indentation
        if re.match(r"^\s*define\s", line):
            define = True
        elif re.match(r"^\s*endef\s*$", line):
            define = False
        else:
            expect_tabs = define or backslash or target
            if not backslash and re.match(r"^\s*(ifdef|ifeq|ifndef|ifneq|endif|elif|else)\b", line):
                expect_tabs = False
            if re.match(r"^[^# \t]+:\s", line):
                target = True
            elif line.strip() == "":
                target = False
            elif define and re.match(r"^\s*#", line):
                pass
            elif expect_tabs and not line.startswith("\t"):
                warn(path, n, "expected indent with tabs")
            elif not expect_tabs and line.startswith("\t"):
                warn(path, n, "unexpected indent with tabs")
        ends_bs = bool(re.match(r"^[^#].*\\$", line))
        if backslash and not ends_bs and line.strip() == "":
            warn(path, n - 1, "remove trailing backslash")
        backslash = ends_bs
        if re.match(r"^.*(  |\t ?)\\$", line.rstrip()):
            warn(path, n, "use only one space before backslash")
        if re.match(r"^[^#].*[^$]\$\{\w+\}", line.rstrip()):
            warn(path, n, "use $() to delimit variables, not ${}")
        if not line.isascii():
            warn(path, n, "remove UTF-8 characters")
        if re.match(rf"^{upper}_SOURCE\s*=\s*{re.escape(pkg)}-\$\({upper}_VERSION\)\.tar\.gz", line):
            warn(path, n, "remove default value of _SOURCE variable")
        # variables: prefix, overrides, useless flags
        if re.match(r"^\s*(ifdef|ifeq|ifndef|ifneq)\b", line):
            cond += 1
            continue
        if re.match(r"^\s*endif\b", line):
            cond -= 1
            continue
        m = re.match(r"^(define\s+)?([A-Z0-9_]+_[A-Z0-9_]+)", line)
        if m and not ALLOWED_FOREIGN.match(m.group(2)) and \
                not re.search(rf"(HOST_|ROOTFS_)?({upper}_[A-Z0-9_]+)", line):
            warn(path, n, f"possible typo: {m.group(2)} -> *{upper}*")
        if cond == 0 and re.search(r"_INSTALL_IMAGES\s*=\s*NO|_INSTALL_REDISTRIBUTE\s*=\s*YES|"
                                   r"_INSTALL_STAGING\s*=\s*NO|_INSTALL_TARGET\s*=\s*YES", line):
            warn(path, n, "useless default value")
        m = re.match(r"^([A-Z0-9_]+)\s*((\+|:|)=)", line)
        if not m:
            continue
        var, op = m.group(1), m.group(2)
        if cond == 0:
            if var in cond_set and op in (":=", "="):
                warn(path, n, f"unconditional override of variable {var} previously conditionally set")
            if var in uncond_set and op in (":=", "="):
                warn(path, n, f"unconditional override of variable {var}")
            uncond_set.add(var)
        else:
            if re.match(r"^[A-Z0-9_]+(_CONF_OPTS|_DEPENDENCIES)\s*=", line):
                warn(path, n, f"conditional override of variable {var}")
            elif var in uncond_set and op in (":=", "=") and \
                    not re.match(r"^[A-Z0-9_]+(_ARCH|_CPU|_SITE|_SOURCE|_VERSION)\s*=", line):
                warn(path, n, f"conditional override of variable {var}")
            else:
                cond_set.add(var)
    return lines


# -- .hash, defconfig, shell ----------------------------------------------------------------

HASH_LEN = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}


def check_hash(path):
    text, lines = read_lines(path)
    check_common(path, text, lines)
    entries = {}
    for n, line in enumerate(lines, 1):
        if line.strip() == "" or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            warn(path, n, "expected three fields")
            continue
        htype, hexa, fname = fields
        if htype not in HASH_LEN:
            warn(path, n, "unexpected type of hash")
        elif not re.match(r"^[0-9A-Fa-f]{%d}$" % HASH_LEN[htype], hexa):
            warn(path, n, f"hash size does not match type (expected {HASH_LEN[htype]} hex digits)")
        if line != f"{htype}  {hexa}  {fname}":
            warn(path, n, "separation does not match expectation")
        entries[fname] = (htype, hexa.lower(), n)
    return entries


def check_defconfig(path):
    text, lines = read_lines(path)
    if "BR2_DOWNLOAD_FORCE_CHECK_HASHES=y" not in lines:
        warn(path, 0, "missing BR2_DOWNLOAD_FORCE_CHECK_HASHES")
    return lines


def is_shell_script(path):
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and re.search(rb"\b(ba|da|k)?sh\b", first) is not None


def check_shell(path):
    text, lines = read_lines(path)
    check_common(path, text, lines)
    try:
        p = subprocess.run(["shellcheck", path], capture_output=True, text=True)
    except FileNotFoundError:
        warn(path, 0, "failed to call 'shellcheck'")
        return
    if p.returncode != 0:
        warn(path, 0, "run 'shellcheck' and fix the warnings\n" + p.stdout.strip())


# -- structure and variables ------------------------------------------------------------------

def mk_vars(lines):
    """Top-level assignments, continuation lines joined (values unexpanded)."""
    out, cur = {}, None
    for line in lines:
        if cur is not None:
            out[cur] += " " + line.strip().rstrip("\\").strip()
            if not line.rstrip().endswith("\\"):
                cur = None
            continue
        m = re.match(r"^([A-Z0-9_]+)\s*(\+|:|\?|)=\s*(.*)$", line)
        if m:
            val = m.group(3).rstrip("\\").strip()
            out[m.group(1)] = (out.get(m.group(1), "") + " " + val).strip() if m.group(2) == "+" else val
            if line.rstrip().endswith("\\"):
                cur = m.group(1)
    return out


def cargo_toml(crate_dir):
    version, features, section = None, [], None
    with open(os.path.join(crate_dir, "Cargo.toml")) as f:
        for line in f:
            s = line.split("#")[0].strip()
            m = re.match(r"^\[(.+)\]$", s)
            if m:
                section = m.group(1).strip()
                continue
            if section == "package" and version is None:
                m = re.match(r'^version\s*=\s*"([^"]+)"', s)
                if m:
                    version = m.group(1)
            if section == "features":
                m = re.match(r"^([A-Za-z0-9_-]+)\s*=", s)
                if m and m.group(1) != "default":
                    features.append(m.group(1))
    return version, features


def check_structure(ext, crate_dir):
    desc = os.path.join(ext, "external.desc")
    name = None
    if not os.path.isfile(desc):
        warn(desc, 0, "missing external.desc")
    else:
        _, lines = read_lines(desc)
        for line in lines:
            m = re.match(r"^name:\s*(\S+)\s*$", line)
            if m:
                name = m.group(1)
        if name is None or not re.match(r"^[A-Za-z0-9_]+$", name):
            warn(desc, 1, "external.desc needs 'name: <NAME>' of [A-Za-z0-9_]")
            name = name or "?"
        if not any(line.startswith("desc:") for line in lines):
            warn(desc, 0, "external.desc has no 'desc:' line")
    path_var = f"BR2_EXTERNAL_{name}_PATH"
    emk = os.path.join(ext, "external.mk")
    if not os.path.isfile(emk) or f"$({path_var})/package/*/*.mk" not in open(emk).read():
        warn(emk, 0, f"external.mk must include $({path_var})/package/*/*.mk")
    top = os.path.join(ext, "Config.in")
    top_text = open(top).read() if os.path.isfile(top) else ""
    if not top_text:
        warn(top, 0, "missing top-level Config.in")
    pkgs_dir = os.path.join(ext, "package")
    pkgs = sorted(d for d in os.listdir(pkgs_dir)) if os.path.isdir(pkgs_dir) else []
    if not pkgs:
        warn(pkgs_dir, 0, "no packages")
    for pkg in pkgs:
        d = os.path.join(pkgs_dir, pkg)
        upper = pkg.replace("-", "_").upper()
        cfg, mk, hsh = (os.path.join(d, f) for f in ("Config.in", f"{pkg}.mk", f"{pkg}.hash"))
        for f in (cfg, mk, hsh):
            if not os.path.isfile(f):
                warn(f, 0, "missing")
        if not all(os.path.isfile(f) for f in (cfg, mk, hsh)):
            continue
        if f'source "${path_var}/package/{pkg}/Config.in"' not in top_text:
            warn(top, 0, f'must source "${path_var}/package/{pkg}/Config.in"')
        cfg_text = open(cfg).read()
        _, mk_lines = read_lines(mk)
        global lines_processed
        lines_processed -= len(mk_lines)  # counted once, by check_mk
        v = mk_vars(mk_lines)
        for var in ("VERSION", "SITE", "LICENSE", "LICENSE_FILES"):
            if not v.get(f"{upper}_{var}"):
                warn(mk, 0, f"{upper}_{var} is not set")
        last = [line for line in mk_lines if line.strip()][-1:]
        if last != ["$(eval $(cargo-package))"]:
            warn(mk, len(mk_lines), "last line must be $(eval $(cargo-package))")
        m = re.search(rf"^config BR2_PACKAGE_{upper}\n((?:\t.*\n|\n)*)", cfg_text, re.M)
        body = m.group(1) if m else ""
        if not m:
            warn(cfg, 0, f"no 'config BR2_PACKAGE_{upper}'")
        if "\tdepends on BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS" not in body:
            warn(cfg, 0, f"BR2_PACKAGE_{upper} must depend on BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS")
        if "\tselect BR2_PACKAGE_HOST_RUSTC\n" not in body:
            warn(cfg, 0, f"BR2_PACKAGE_{upper} must select BR2_PACKAGE_HOST_RUSTC")
        # hashes: the source tarball and every license file
        entries = check_hash(hsh)
        version = v.get(f"{upper}_VERSION", "")
        source = v.get(f"{upper}_SOURCE", f"{pkg}-{version}.tar.gz").replace(f"$({upper}_VERSION)", version)
        if source not in entries:
            warn(hsh, 0, f"no hash for the source tarball {source}")
        for lic in v.get(f"{upper}_LICENSE_FILES", "").split():
            if lic not in entries:
                warn(hsh, 0, f"no hash for license file {lic}")
        # project specifics
        if pkg == "pantavisor":
            cversion, features = cargo_toml(crate_dir)
            if version != cversion:
                warn(mk, 0, f"{upper}_VERSION {version} differs from Cargo.toml's version {cversion}")
            for lic in v.get(f"{upper}_LICENSE_FILES", "").split():
                real = os.path.join(crate_dir, lic)
                if lic in entries and entries[lic][0] in HASH_LEN and os.path.isfile(real):
                    got = hashlib.new(entries[lic][0], open(real, "rb").read()).hexdigest()
                    if got != entries[lic][1]:
                        warn(hsh, entries[lic][2], f"hash of {lic} is wrong (the file's is {got})")
            mk_text = "\n".join(mk_lines)
            for feat in features:
                if not re.search(rf"--features\s+{re.escape(feat)}\b", mk_text):
                    warn(mk, 0, f"cargo feature '{feat}' has no Config.in option passing --features {feat}")
            options = set(re.findall(rf"^config (BR2_PACKAGE_{upper}_\w+)", cfg_text, re.M))
            used = set(re.findall(rf"\b(BR2_PACKAGE_{upper}_\w+)", mk_text))
            for o in sorted(options - used):
                warn(cfg, 0, f"{o} is not used by {pkg}.mk")
            for o in sorted(used - options):
                warn(mk, 0, f"{o} is not defined in Config.in")
    return name


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    ext = os.path.normpath(sys.argv[1])
    crate_dir = sys.argv[2] if len(sys.argv) == 3 else os.path.dirname(os.path.abspath(ext))
    name = check_structure(ext, crate_dir)
    for root, dirs, files in os.walk(ext):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, ext)
            if f == "external.mk" and os.path.exists(os.path.join(root, "external.desc")):
                continue  # check-package -b skips it too
            if re.search(r"Config\.\S*$", f):
                check_config_in(p)
            elif re.match(r"^(.+/)?configs/[^/]+_defconfig$", rel):
                check_defconfig(p)
                for m in re.finditer(rf"\$\(BR2_EXTERNAL_{name}_PATH\)(/[^\"\s]+)", open(p).read()):
                    if not os.path.exists(ext + m.group(1)):
                        warn(p, 0, f"names {m.group(0)}, which does not exist")
            elif f.endswith(".hash"):
                if not re.match(r"^package/([^/]+)/\1\.hash$", rel):
                    check_hash(p)  # package hashes were checked with their package
            elif f.endswith(".mk") or f.endswith(".mk.in"):
                check_mk(p)
            elif is_shell_script(p):
                check_shell(p)
    for w in warnings:
        print(w)
    print(f"{lines_processed} lines processed")
    print(f"{len(warnings)} warnings generated")
    return 1 if warnings else 0


if __name__ == "__main__":
    sys.exit(main())
