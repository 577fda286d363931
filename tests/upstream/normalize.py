#!/usr/bin/env python3
"""The one place where an upstream golden `output` and this device's transcript are made
comparable. Each rule names why it exists; everything not named here must match byte for byte.

    normalize.py GOLDEN TRANSCRIPT TEST   prints what the rules changed and a diff; exit 0 when equal
    normalize.py --self-test              checks the rules on examples (the runner does, first)
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
    # each device of the runner keeps to its own directory (tests/upstream/appengine.config):
    # back to appengine's paths
    ("device paths", re.compile(r"/tmp/pv-up-[^/\"\s]*/storage"), "/var/pantavisor/storage"),
    ("device paths", re.compile(r"/tmp/pv-up-[^/\"\s]*/run\b"), "/run/pantavisor/pv"),
    ("device paths", re.compile(r"/tmp/pv-up-[^/\"\s]*/writable"), "/var/run/pv/writable"),
    ("device paths", re.compile(r"/tmp/pv-up-[^/\"\s]*/(exports|volumes|etc)"), r"/\1"),
    ("device paths", re.compile(r"/tmp/pv-up-[^/\"\s]*/(configs|media|disks)"), r"/run/pantavisor/\1"),
    # the namespace tier boots in standalone mode, the goldens' device in appengine mode
    ("init mode", re.compile(r'^(\s*"value": )"standalone"'), r'\1"appengine"'),
]

def config_default(*keys):
    """One `/config2` entry of one of `keys` at its default, and the comma that precedes it."""
    return re.compile(r',\r?\n  \{\r?\n    "key": "(%s)",\r?\n    "value": [^\n]*\n'
                      r'    "modified": "default"\r?\n  \}' % "|".join(keys))


# (why, pattern): whole runs of lines dropped from both files
BLOCKS = [
    # upstream's hwrngd daemon runs /usr/bin/rngd in embedded and standalone modes: the goldens'
    # appengine device never ran it (pid 0, respawn true), a standalone device here without
    # rngd clears its respawn (README), so its row of `daemons ls` goes
    ("no hwrngd", re.compile(r'^  \{\r?\n    "name": "hwrngd",\r?\n    "pid": [^\n]*\n    "respawn": [a-z]+\r?\n  \},?\r?\n', re.M)),
    # `config ls` (pv-ctrl /config2) entries at their default, with the comma before them:
    # keys upstream added after the goldens were recorded (upstream e2d8d46e, 2026-06-11:
    # PV_XCONNECT_DBUS_SYSTEMBUS_ENABLED; eec07266, 2026-07-20: PV_POWER_MODE; c5e6cec3,
    # 2026-07-21: PV_LOG_TIMESTAMP), and this build's keys of its own (README: system hooks
    # have a time limit, upstream waits for them without one; plain HTTP to a lab Hub)
    ("keys newer than the goldens", config_default(
        "PV_XCONNECT_DBUS_SYSTEMBUS_ENABLED", "PV_POWER_MODE", "PV_LOG_TIMESTAMP")),
    ("this build's own keys", config_default("PV_SYSTEM_HOOK_TIMEOUT", "PH_CREDS_PLAIN_HTTP")),
]

# (why, test, pattern, replacement or DROP): the first matching line of that test's transcript
FIRST = [
    # `config ls`'s system.init.mode as a number: standalone 1, appengine 2
    ("init mode", "core/legacy-config-overload", re.compile(r"^1$"), "2"),
    # appengine's bsp has no kernel.img; the namespace tier's standalone device needs one (a
    # placeholder object): one key and one object more than the goldens'
    ("kernel.img", "runtime/steps-rw", re.compile(r'^  "bsp/kernel\.img",$'), DROP),
    ("kernel.img", "control/basic-endpoints", re.compile(r"^object count: 7$"), "object count: 6"),
    ("kernel.img", "control/basic-endpoints-curl", re.compile(r"^object count: 7$"), "object count: 6"),
    ("kernel.img", "runtime/objects-crud", re.compile(r"^7$"), "6"),
    ("kernel.img", "security/object-checksum",
     re.compile(r"^skipping validation of object named bsp/kernel\.img and id=XXX$"), DROP),
    ("kernel.img", "security/strict-secure-boot", re.compile(r'^        "bsp/kernel\.img",$'), DROP),
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


def first_only(lines, test):
    changed = 0
    for _, t, pat, rep in FIRST:
        if t != test:
            continue
        for i, line in enumerate(lines):
            if pat.search(line):
                if rep is DROP:
                    del lines[i]
                else:
                    lines[i] = pat.sub(rep, line)
                changed += 1
                break
    return changed


def read(path):
    """The file's lines, the BLOCKS dropped; and how many lines they took."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    dropped = 0
    for _, pat in BLOCKS:
        dropped += sum(m.group(0).count("\n") for m in pat.finditer(text))
        text = pat.sub("", text)
    return text.split("\n"), dropped


def main():
    (golden, g_dropped), (actual, a_dropped) = read(sys.argv[1]), read(sys.argv[2])
    golden, g_changed = normalize(golden)
    actual, a_changed = normalize(actual)
    g_changed += g_dropped
    a_changed += a_dropped
    a_changed += first_only(actual, sys.argv[3] if len(sys.argv) > 3 else "")
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


def self_test():
    """Each rule does what it says, and nothing else: a real difference survives."""
    golden = ["+ pvcontrol ls\r", "\x1b[32m[]\x1b[0m\r", '    "value": "/var/pantavisor/storage/logs",\r',
              '    "value": "appengine",', '    "value": "(null)",']
    device = ["[]", '    "value": "/tmp/pv-up-core-x-12/storage/logs",', '    "value": "standalone",',
              '    "value": "(null)",']
    g, gc = normalize(golden)
    d, dc = normalize(device)
    assert g == d and (gc, dc) == (3, 2), (g, d, gc, dc)
    assert normalize(['  "value": "standalone-ish"'])[0] != normalize(['  "value": "appengine-ish"'])[0]
    block = '[\n  {\n    "name": "hwrngd",\n    "pid": 0,\n    "respawn": true\n  },\n  {\n    "name": "x"\n  }\n]\n'
    text = block
    for _, pat in BLOCKS:
        text = pat.sub("", text)
    assert text == '[\n  {\n    "name": "x"\n  }\n]\n', text
    entry = '  {\n    "key": "%s",\n    "value": "%s",\n    "modified": "%s"\n  }'
    conf = "[\n" + ",\n".join(entry % e for e in [
        ("PV_A", "1", "default"), ("PV_POWER_MODE", "locks", "default"), ("PV_B", "2", "default"),
        ("PV_LOG_TIMESTAMP", "absolute", "env"), ("PV_SYSTEM_HOOK_TIMEOUT", "60", "default"),
        ("PH_CREDS_PLAIN_HTTP", "0", "default")]) + "\n]\n"
    for _, pat in BLOCKS:
        conf = pat.sub("", conf)
    assert conf == "[\n" + ",\n".join(entry % e for e in [
        ("PV_A", "1", "default"), ("PV_B", "2", "default"),
        ("PV_LOG_TIMESTAMP", "absolute", "env")]) + "\n]\n", conf
    lines = ["1", "1"]
    assert first_only(lines, "core/legacy-config-overload") == 1 and lines == ["2", "1"], lines
    lines = ["1"]
    assert first_only(lines, "control/status-codes") == 0 and lines == ["1"], lines
    return 0


if __name__ == "__main__":
    sys.exit(self_test() if sys.argv[1:] == ["--self-test"] else main())
