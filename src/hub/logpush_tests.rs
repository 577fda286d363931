use super::*;
use crate::logs::{Level, LogConfig, LogTree, MaxSize, Record};
use crate::storage::fs::RealFs;
use crate::storage::simfs::{Cut, SimFs};
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many of the leading entries (by their lengths) one POST takes.
fn batch(lens: &[usize], isolate: bool) -> usize {
    let (mut n, mut bytes) = (0, 2);
    for &len in lens {
        if !fits(n, bytes, len, isolate) {
            break;
        }
        bytes += len + usize::from(n > 0);
        n += 1;
    }
    n
}

fn parse(e: &str) -> crate::json::Value {
    crate::json::parse(e.as_bytes(), Default::default()).unwrap()
}

#[test]
fn an_entry_names_platform_and_source_as_upstream() {
    let e = parse(&entry("5", "pvr-sdk/lxc/console.log", b"hello \"x\"\tz"));
    let field = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_string);
    assert_eq!(field("plat").as_deref(), Some("pvr-sdk"));
    assert_eq!(field("src").as_deref(), Some("/lxc/console.log"));
    assert_eq!(field("rev").as_deref(), Some("5"));
    assert_eq!(field("lvl").as_deref(), Some("INFO"));
    assert_eq!(field("msg").as_deref(), Some("hello \"x\"\tz"));
    assert_eq!(e.get("tsec").and_then(|v| v.as_u64()), Some(0));
    assert_eq!(e.get("tnano").and_then(|v| v.as_u64()), Some(0));
    // pantavisor's own log
    let e = parse(&entry("locals/a", "pantavisor/pantavisor.log", b"x"));
    assert_eq!(e.get("plat").and_then(|v| v.as_str()), Some("pantavisor"));
    assert_eq!(
        e.get("src").and_then(|v| v.as_str()),
        Some("/pantavisor.log")
    );
    // a file right under the revision
    let e = parse(&entry("0", "pv.log", b"x"));
    assert_eq!(
        e.get("plat").and_then(|v| v.as_str()),
        Some("pantavisor-UNKNOWN")
    );
    assert_eq!(e.get("src").and_then(|v| v.as_str()), Some("pv.log"));
    // NUL bytes and bad UTF-8 still make valid JSON
    let e = parse(&entry("0", "a/b", b"a\0b\xffc"));
    assert_eq!(e.get("msg").and_then(|v| v.as_str()), Some("a b\u{fffd}c"));
    // a long platform name is cut at 63 bytes, on a character boundary
    let long = format!("{}/x", "é".repeat(40));
    let e = parse(&entry("0", &long, b"x"));
    let plat = e.get("plat").and_then(|v| v.as_str()).unwrap().to_string();
    assert_eq!(plat, "é".repeat(31));
}

#[test]
fn lines_end_where_the_newlines_are() {
    assert_eq!(
        lines(b"a\nbc\n\nd", false),
        vec![(&b"a"[..], 2), (&b"bc"[..], 5), (&b""[..], 6)]
    );
    // the unfinished last line waits, even in a full block that has lines
    assert_eq!(lines(b"a\nd", true), vec![(&b"a"[..], 2)]);
    // a full block with no newline goes as one line; a short one waits
    assert_eq!(lines(b"abc", true), vec![(&b"abc"[..], 3)]);
    assert!(lines(b"abc", false).is_empty());
    assert!(lines(b"", true).is_empty());
}

#[test]
fn batches_keep_to_the_hubs_limits() {
    assert_eq!(batch(&[], false), 0);
    assert_eq!(batch(&[10; 500], false), MAX_ENTRIES);
    assert_eq!(batch(&[10; 5], false), 5);
    // an oversized entry still goes, alone
    assert_eq!(batch(&[MAX_BYTES * 2, 1], false), 1);
    // isolation: one at a time
    assert_eq!(batch(&[10; 5], true), 1);
    // the byte limit counts the body exactly: brackets and commas
    for lens in [
        vec![1000; 300],
        vec![MAX_BYTES / 2 - 2, 1, 1],
        vec![65_535; 9],
    ] {
        let n = batch(&lens, false);
        let entries: Vec<String> = lens[..n].iter().map(|&l| "x".repeat(l)).collect();
        assert!(body(&entries).len() <= MAX_BYTES, "{n} of {lens:?}");
        if n < lens.len() && n < MAX_ENTRIES {
            let more: Vec<String> = lens[..=n].iter().map(|&l| "x".repeat(l)).collect();
            assert!(
                body(&more).len() > MAX_BYTES,
                "{n} of {lens:?} could take one more"
            );
        }
    }
    assert_eq!(batch(&[MAX_BYTES - 2], false), 1);
    assert_eq!(batch(&[MAX_BYTES - 3, 1], false), 1);
    assert_eq!(batch(&[MAX_BYTES - 4, 1], false), 2);
}

#[test]
fn answers_are_taken_retried_or_refused_as_upstream() {
    assert_eq!(answer(Some(200)), Answer::Taken);
    for s in [
        None,
        Some(401),
        Some(403),
        Some(408),
        Some(429),
        Some(500),
        Some(503),
    ] {
        assert_eq!(answer(s), Answer::Retry, "{s:?}");
    }
    // upstream takes only 200; other 2xx, 1xx and 3xx are retried
    for s in [Some(100), Some(201), Some(204), Some(302)] {
        assert_eq!(answer(s), Answer::Retry, "{s:?}");
    }
    for s in [400, 404, 413, 422, 499] {
        assert_eq!(answer(Some(s)), Answer::Refused, "{s}");
    }
}

#[test]
fn the_body_is_a_json_array_of_the_entries() {
    let entries = vec![entry("1", "a/b", b"one"), entry("1", "a/b", b"two")];
    let v = parse(&body(&entries));
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[1].get("msg").and_then(|m| m.as_str()), Some("two"));
    assert_eq!(body(&[]), "[]");
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!(
            "pv-logpush-{}-{name}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A temp dir with `logs` in it, and a positions file beside it.
fn dirs(name: &str) -> (Tmp, PathBuf, PathBuf) {
    let t = Tmp::new(name);
    let logs = t.0.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let state = t.0.join("pos");
    (t, logs, state)
}

fn append(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// `<rev> <plat><src> <msg>` of each entry of a body, checking the Hub's limits on the way.
fn received(b: &Batch) -> Vec<String> {
    assert!(
        b.body.len() <= MAX_BYTES,
        "a body of {} bytes",
        b.body.len()
    );
    let v = parse(&b.body);
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), b.entries);
    assert!((1..=MAX_ENTRIES).contains(&arr.len()));
    arr.iter()
        .map(|e| {
            let f = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap().to_string();
            format!("{} {}{} {}", f("rev"), f("plat"), f("src"), f("msg"))
        })
        .collect()
}

/// Everything there is to push, each batch committed as the Hub took it.
fn drain(p: &mut Pusher) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(b) = p.next_batch().unwrap() {
        out.extend(received(&b));
        p.commit(&b).unwrap();
    }
    out
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> (Vec<u8>, Vec<String>) {
    let mut bytes = Vec::new();
    let mut lines = Vec::new();
    for i in range {
        let l = format!("{prefix} line {i}");
        bytes.extend_from_slice(l.as_bytes());
        bytes.push(b'\n');
        lines.push(l);
    }
    (bytes, lines)
}

#[test]
fn every_file_of_every_revision_goes_once_across_a_restart() {
    let t = Tmp::new("restart");
    let logs = t.0.join("logs");
    let state = logs.join(".ph-push");
    let files = [
        (
            "5",
            "pantavisor/pantavisor.log",
            "pantavisor/pantavisor.log",
        ),
        ("5", "pv.log", "pantavisor-UNKNOWNpv.log"),
        ("5", "pvr-sdk/lxc/console.log", "pvr-sdk/lxc/console.log"),
        ("4", "pvr-sdk/var/log/messages", "pvr-sdk/var/log/messages"),
        (
            "locals/a",
            "pantavisor/pantavisor.log",
            "pantavisor/pantavisor.log",
        ),
    ];
    let mut want = Vec::new();
    for (rev, rel, key) in files {
        let (bytes, lines) = numbered(rel, 0..30);
        append(&logs, &format!("{rev}/{rel}"), &bytes);
        want.extend(lines.iter().map(|l| format!("{rev} {key} {l}")));
    }
    // archives, the `current` link and the positions file are not pushed
    append(&logs, "5/pantavisor/pantavisor.log.1.gz", b"archived\n");
    append(
        &logs,
        "5/pantavisor/pantavisor.log.2.gz.pending",
        b"archived\n",
    );
    append(&logs, "stray", b"not a revision\n");
    std::os::unix::fs::symlink("5", logs.join("current")).unwrap();
    // an unfinished line waits for its end
    append(&logs, "5/pvr-sdk/lxc/console.log", b"half a ");

    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    p.set_current("5");
    let got = drain(&mut p);
    // the running revision first, then the others
    assert!(got == want, "{got:#?}");
    assert_eq!(p.take_lost(), 0);
    drop(p);

    // restart: only what is new
    append(&logs, "5/pvr-sdk/lxc/console.log", b"line\n");
    append(&logs, "4/pvr-sdk/var/log/messages", b"later\n");
    append(&logs, "6/pantavisor/pantavisor.log", b"new revision\n");
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    p.set_current("6");
    assert_eq!(
        drain(&mut p),
        vec![
            "6 pantavisor/pantavisor.log new revision",
            "5 pvr-sdk/lxc/console.log half a line",
            "4 pvr-sdk/var/log/messages later",
        ]
    );
    assert!(p.next_batch().unwrap().is_none());
    // an open pusher sees a file that appears later
    append(&logs, "6/app/lxc/console.log", b"hello\n");
    assert_eq!(drain(&mut p), vec!["6 app/lxc/console.log hello"]);
}

#[test]
fn an_uncommitted_batch_comes_again() {
    let (_t, logs, state) = dirs("uncommitted");
    append(&logs, "1/a/b", &numbered("x", 0..250).0);
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    let first = received(&p.next_batch().unwrap().unwrap());
    assert_eq!(first.len(), MAX_ENTRIES);
    // a transient error: the daemon asks again, in this process or after a restart
    assert_eq!(received(&p.next_batch().unwrap().unwrap()), first);
    drop(p);
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    let got = drain(&mut p);
    assert_eq!(got.len(), 250);
    assert_eq!(got[..MAX_ENTRIES], first[..]);
}

#[test]
fn batches_of_real_files_keep_to_the_hubs_limits() {
    let (_t, logs, state) = dirs("limits");
    append(&logs, "1/a/many", &numbered("m", 0..450).0);
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    let mut sizes = Vec::new();
    while let Some(b) = p.next_batch().unwrap() {
        sizes.push(received(&b).len());
        p.commit(&b).unwrap();
    }
    assert_eq!(sizes, vec![200, 200, 50]);

    // long lines: the byte limit, with bodies as full as it allows
    let long = format!("{}\n", "y".repeat(2000));
    append(&logs, "1/a/long", long.repeat(600).as_bytes());
    let mut n = 0;
    while let Some(b) = p.next_batch().unwrap() {
        let got = received(&b);
        n += got.len();
        if n < 600 {
            assert!(b.body.len() > MAX_BYTES - 2200, "{} bytes", b.body.len());
        }
        p.commit(&b).unwrap();
    }
    assert_eq!(n, 600);

    // a line longer than a read goes in pieces; each piece, all escapes, fits one POST
    let ctl = vec![1u8; 3 * BLOCK + 100];
    append(&logs, "1/a/ctl", &ctl);
    let got = drain(&mut p);
    assert_eq!(
        got.len(),
        3,
        "three full pieces; the rest waits for its end"
    );
    assert!(got.iter().all(|g| g.ends_with(&"\u{1}".repeat(BLOCK))));
    append(&logs, "1/a/ctl", b"\n");
    let got = drain(&mut p);
    assert_eq!(got.len(), 1);
    assert!(got[0].ends_with(&format!(" {}", "\u{1}".repeat(100))));
}

#[test]
fn a_refused_batch_is_isolated_entry_by_entry() {
    let (_t, logs, state) = dirs("isolate");
    append(&logs, "1/a/b", &numbered("x", 0..10).0);
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    let b = p.next_batch().unwrap().unwrap();
    assert_eq!(b.entries, 10);
    p.isolate();
    let one = p.next_batch().unwrap().unwrap();
    assert_eq!(received(&one), vec!["1 a/b x line 0"]);
    // dropped for good; then whole batches again
    p.commit(&one).unwrap();
    assert_eq!(p.next_batch().unwrap().unwrap().entries, 9);
}

/// The commit's writes, counted on a pusher of its own.
fn commit_ops() -> u64 {
    let t = Tmp::new("ops");
    let sim = SimFs::new();
    crate::storage::fs::create_dir_all(&sim, Path::new("/st")).unwrap();
    append(&t.0, "1/a/b", b"x\n");
    let mut p = Pusher::open(&sim, &t.0, Path::new("/st/pos")).unwrap();
    let b = p.next_batch().unwrap().unwrap();
    let before = sim.ops();
    p.commit(&b).unwrap();
    sim.ops() - before
}

#[test]
fn a_power_cut_sends_at_most_the_batch_in_flight_again() {
    let ops = commit_ops();
    assert!(ops >= 4, "temp, write, fsync, rename: {ops}");
    let (bytes, lines) = numbered("p", 0..1000);
    for cut in [Cut::DurableOnly, Cut::KeepAll] {
        // n = ops + 1: the crash comes after the commit (it is all durable)
        for n in 1..=ops + 1 {
            let t = Tmp::new("cut");
            append(&t.0, "3/a/b", &bytes);
            let sim = SimFs::new();
            crate::storage::fs::create_dir_all(&sim, Path::new("/st")).unwrap();
            let state = Path::new("/st/pos");
            let mut hub = Vec::new();
            let mut p = Pusher::open(&sim, &t.0, state).unwrap();
            for _ in 0..2 {
                let b = p.next_batch().unwrap().unwrap();
                hub.extend(received(&b));
                p.commit(&b).unwrap();
            }
            let b = p.next_batch().unwrap().unwrap();
            let in_flight = received(&b);
            hub.extend(in_flight.clone());
            sim.arm_crash(n);
            let r = p.commit(&b);
            assert_eq!(r.is_err(), n <= ops, "crash point {n}");
            drop(p);
            sim.power_cut(cut);
            let mut p = Pusher::open(&sim, &t.0, state).unwrap();
            hub.extend(drain(&mut p));
            // every line, in order, the batch in flight at most twice
            let mut want: Vec<String> = lines.iter().map(|l| format!("3 a/b {l}")).collect();
            let again = hub.len() - want.len();
            assert!(
                again == 0 || again == in_flight.len(),
                "{cut:?} at {n}: {again}"
            );
            if again > 0 {
                let at = 2 * MAX_ENTRIES;
                want.splice(at..at, in_flight.iter().cloned());
            }
            assert_eq!(hub, want, "{cut:?} at {n}");
        }
    }
}

/// A log tree of revision 5 whose files rotate every ~10 KB, as the device's.
fn tree(logs: &Path) -> LogTree {
    let mut c = LogConfig::new(logs, "5");
    c.level = Level::Info;
    c.max_size = MaxSize::Bytes(200_000);
    let t = LogTree::new(&c);
    assert_eq!(t.limits().per_file, 10_000);
    t
}

fn log_lines(t: &mut LogTree, range: std::ops::Range<usize>) -> u64 {
    let mut bytes = 0;
    for i in range {
        let r = Record::new(
            Level::Info,
            7,
            "test",
            &format!("line {i:04} {}", "z".repeat(60)),
        );
        bytes += r.text().len() as u64;
        t.log(&r);
    }
    bytes
}

fn numbers(got: &[String]) -> Vec<usize> {
    got.iter()
        .map(|g| {
            let at = g.find("line ").unwrap() + 5;
            g[at..at + 4].parse().unwrap()
        })
        .collect()
}

#[test]
fn a_file_rotated_while_open_is_read_to_its_end() {
    let (_t, logs, state) = dirs("rotate");
    let mut lt = tree(&logs);
    log_lines(&mut lt, 0..50);
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    p.set_current("5");
    assert_eq!(numbers(&drain(&mut p)), (0..50).collect::<Vec<_>>());
    // about 11 KB more: one rotation, the renamed file compressed and removed at once
    log_lines(&mut lt, 50..180);
    let gz = logs.join("5/pantavisor/pantavisor.log.1.gz");
    assert!(gz.exists());
    assert!(!logs.join("5/pantavisor/pantavisor.log.2.gz").exists());
    // an unfinished last line of the rotated file still goes (nobody finishes it)
    assert_eq!(numbers(&drain(&mut p)), (50..180).collect::<Vec<_>>());
    assert_eq!(p.take_lost(), 0);
}

#[test]
fn a_rotated_file_ends_with_its_unfinished_line() {
    let (_t, logs, state) = dirs("tail");
    append(&logs, "2/c/out", b"one\ntwo");
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    assert_eq!(drain(&mut p), vec!["2 c/out one"]);
    fs::rename(logs.join("2/c/out"), logs.join("2/c/out.1.gz.pending")).unwrap();
    append(&logs, "2/c/out", b"three\n");
    assert_eq!(drain(&mut p), vec!["2 c/out two", "2 c/out three"]);
    assert_eq!(p.take_lost(), 0);
}

#[test]
fn rotations_while_the_pusher_was_away_are_counted_as_lost() {
    let (_t, logs, state) = dirs("away");
    let mut lt = tree(&logs);
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    log_lines(&mut lt, 0..50);
    assert_eq!(drain(&mut p).len(), 50);
    log_lines(&mut lt, 50..80);
    assert_eq!(drain(&mut p).len(), 30);
    // the pusher is down while three rotations happen
    drop(p);
    let written = log_lines(&mut lt, 100..500);
    assert!(logs.join("5/pantavisor/pantavisor.log.3.gz").exists());
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    let got = numbers(&drain(&mut p));
    // the current file from its start; the rest counted, byte for byte
    let live = fs::read(logs.join("5/pantavisor/pantavisor.log")).unwrap();
    let n_live = live.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(got, (500 - n_live..500).collect::<Vec<_>>());
    assert_eq!(p.take_lost(), written - live.len() as u64);
    assert_eq!(p.take_lost(), 0);
}

#[test]
fn a_truncated_file_counts_what_it_lost_and_starts_over() {
    let (_t, logs, state) = dirs("trunc");
    let console = logs.join("2/app/lxc/console.log");
    append(&logs, "2/app/lxc/console.log", &numbered("c", 0..10).0);
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    assert_eq!(drain(&mut p).len(), 10);
    // more lines, then the walk archives the file in place (copy, truncate) before they went
    let (more, _) = numbered("c", 10..20);
    append(&logs, "2/app/lxc/console.log", &more);
    let mut gz = fs::File::create(logs.join("2/app/lxc/console.log.1.gz")).unwrap();
    crate::logs::gzip_stored(&mut fs::File::open(&console).unwrap(), &mut gz).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&console)
        .unwrap()
        .set_len(0)
        .unwrap();
    // the writer goes on, past the old position
    let (again, _) = numbered("d", 0..30);
    append(&logs, "2/app/lxc/console.log", &again);
    let got = drain(&mut p);
    assert_eq!(got.len(), 30);
    assert!(got[0].ends_with("d line 0"));
    assert_eq!(p.take_lost(), more.len() as u64);

    // truncated below the position: the same, from what was seen
    fs::OpenOptions::new()
        .write(true)
        .open(&console)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&logs, "2/app/lxc/console.log", b"e\n");
    assert_eq!(drain(&mut p), vec!["2 app/lxc/console.log e"]);
    assert_eq!(p.take_lost(), 0, "everything before was pushed");
}

#[test]
fn a_removed_revision_counts_its_unpushed_bytes() {
    let (_t, logs, state) = dirs("gc");
    append(&logs, "3/a/b", &numbered("g", 0..250).0);
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    let b = p.next_batch().unwrap().unwrap();
    p.commit(&b).unwrap();
    drop(p);
    let size = fs::metadata(logs.join("3/a/b")).unwrap().len();
    let pushed: usize = numbered("g", 0..200).0.len();
    fs::remove_dir_all(logs.join("3")).unwrap();
    let mut p = Pusher::open(&RealFs, &logs, &state).unwrap();
    assert!(p.next_batch().unwrap().is_none());
    assert_eq!(p.take_lost(), size - pushed as u64);
}

#[test]
fn a_bad_positions_file_is_an_error_naming_it() {
    let t = Tmp::new("bad");
    let state = t.0.join("pos");
    for text in [
        "junk\n",
        "pv-logpush 1\n1 2 x 0 1 0 0 5 a/b\n",
        "pv-logpush 1\n1 2 3 0 1 0 99999999999 5 a/b\n",
        "pv-logpush 1\n1 2 3 0 1 0 0 ../x a\n",
        "pv-logpush 1\n1 2 3 0 1 0 0 5\n",
    ] {
        fs::write(&state, text).unwrap();
        let e = Pusher::open(&RealFs, &t.0, &state).err().unwrap();
        assert!(e.to_string().contains(&state.display().to_string()), "{e}");
    }
    fs::write(&state, "pv-logpush 1\n1 2 3 0 1 0 0 locals/x a b/c d\n").unwrap();
    assert!(
        Pusher::open(&RealFs, &t.0, &state).is_ok(),
        "spaces in a name"
    );
}
